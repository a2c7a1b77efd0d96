//! A Thread-Metric-style RTOS benchmark: each test counts operations for `periods` periods of
//! `period_ms` and prints `RESULT rtos <test> <median> <min> <max>` (operations per period;
//! higher is better). `cargo xtask bench rtos --board linuxu` runs it next to the same tests
//! written with POSIX (`xtask/guest/rtos.c`) and prints the ratios.
//!
//! A reporter (main, priority 59, above every measured thread) sleeps to absolute deadlines
//! one period apart and reads the test's counter at each deadline; the difference is that
//! period's count. Then it raises a stop flag, releases any blocked thread and joins them.
//!
//! - `basic`: one thread runs a fixed arithmetic loop: 32 rounds of a serial xor-shift-multiply
//!   on a `u32` (no SIMD can help, no compiler can fold it), `black_box`ed; one op = one pass
//!   of 32 rounds. The calibration of the CPU's speed (and of the two compilers);
//! - `coop`: 5 threads of one priority, each `counter += 1` then `yield_now()`; ops = the
//!   sum of the 5 counters (one op = one yield, i.e. one switch);
//! - `preempt`: 5 threads of rising priority (20..24) chained by semaphores: the lowest gives
//!   the second's semaphore, which wakes it and preempts the lowest; it gives the third's,
//!   and so on up to the top, which counts and blocks again on its semaphore; the chain
//!   unwinds back down to the lowest. One op = one chain cycle (4 preemptions);
//! - `irq`: a thread raises a self-interrupt (`rhea::irq::raise_self` on a vector of
//!   `rhea::irq::register_fast`) in a loop; the handler counts. One op = one interrupt;
//! - `irq_preempt`: the same, but the handler gives a semaphore that a higher-priority thread
//!   waits on; one op = one wake-up of that thread (interrupt, preemption, back);
//! - `msg`: one thread sends a 16-byte message into a `rhea::sync::MessageQueue` and
//!   receives it back; one op = one send plus one receive;
//! - `sem`: one thread takes then gives a `Semaphore` (never contended); one op = both;
//! - `mutex`: one thread locks then unlocks a `rhea::sync::Mutex` (never contended); one op =
//!   both;
//! - `events`: one thread sets a flag of `rhea::sync::EventFlags` and waits for it (already
//!   set), clearing it; one op = both;
//! - `alloc`: one thread allocates 128 bytes (`Vec::with_capacity`) and frees them; one op =
//!   both (the kernel heap: TLSF under interrupts off);
//! - `pool`: one thread takes a 128-byte block from a `rhea::sync::BlockPool` of 16 blocks
//!   (`try_alloc`) and gives it back (drops the `Block`); one op = both.
//!
//! Arguments from the kernel command line: `periods=N` (default 5), `period_ms=M` (default
//! 200).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::hint::black_box;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use rhea::sync::{BlockPool, EventFlags, MessageQueue, Mutex, Semaphore, WaitMode};
use rhea::thread::{Builder, JoinHandle, Priority};
use rhea::time::{Duration, cycles_per_second, now};

rhea::main!(main);

fn prio(n: u32) -> Priority {
    Priority::new(n).expect("valid")
}

/// The reporter's priority: above every measured thread.
const REPORTER: u32 = 59;
/// The measured threads' usual priority.
const WORKER: u32 = 30;

/// Raised at the end of each test; the measured threads check it every operation.
static STOP: AtomicBool = AtomicBool::new(false);
/// The operations of the running test.
static OPS: AtomicU64 = AtomicU64::new(0);

fn stopping() -> bool {
    STOP.load(Ordering::Relaxed)
}

fn count() {
    OPS.fetch_add(1, Ordering::Relaxed);
}

struct Config {
    periods: usize,
    period: Duration,
}

/// Runs the reporter loop over the test's threads (already spawned, not yet run: the
/// reporter is above them), then stops them: `release` wakes threads that block, after
/// `STOP` is raised.
fn measure(name: &str, cfg: &Config, threads: Vec<JoinHandle>, release: impl Fn()) {
    let mut counts = Vec::with_capacity(cfg.periods);
    let mut last = OPS.load(Ordering::Relaxed);
    let mut next = now().saturating_add(cfg.period);
    for _ in 0..cfg.periods {
        rhea::thread::sleep_until(next);
        let c = OPS.load(Ordering::Relaxed);
        counts.push(c - last);
        last = c;
        next = next.saturating_add(cfg.period);
    }
    STOP.store(true, Ordering::Relaxed);
    release();
    for t in threads {
        t.join().expect("join");
    }
    STOP.store(false, Ordering::Relaxed);
    OPS.store(0, Ordering::Relaxed);
    counts.sort_unstable();
    let median = counts.get(counts.len() / 2).copied().unwrap_or(0);
    let min = counts.first().copied().unwrap_or(0);
    let max = counts.last().copied().unwrap_or(0);
    rhea::println!("RESULT rtos {name} {median} {min} {max}");
}

fn spawn(name: &str, priority: u32, f: impl FnOnce() + Send + 'static) -> JoinHandle {
    Builder::new()
        .name(name)
        .priority(prio(priority))
        .spawn(f)
        .expect("spawn")
}

fn basic(cfg: &Config) {
    let t = spawn("basic", WORKER, || {
        let mut acc = 1u32;
        while !stopping() {
            for _ in 0..32 {
                acc = (acc ^ (acc >> 13)).wrapping_mul(0x5bd1_e995);
            }
            acc = black_box(acc);
            count();
        }
    });
    measure("basic", cfg, alloc::vec![t], || {});
}

fn coop(cfg: &Config) {
    let threads = (0..5)
        .map(|_| {
            spawn("coop", WORKER, || {
                while !stopping() {
                    count();
                    rhea::thread::yield_now();
                }
            })
        })
        .collect();
    measure("coop", cfg, threads, || {});
}

const CHAIN: usize = 5;
static CHAIN_SEMS: [Semaphore; CHAIN] = [const { Semaphore::new(0, 1) }; CHAIN];

fn preempt(cfg: &Config) {
    let mut threads = Vec::new();
    // The lowest: gives the next one's semaphore, which preempts it, until stopped; it gives
    // once more after the stop so every blocked thread of the chain wakes and sees it.
    threads.push(spawn("chain0", 20, || {
        loop {
            let stop = stopping();
            let _ = CHAIN_SEMS[1].give();
            if stop {
                break;
            }
        }
    }));
    for i in 1..CHAIN {
        threads.push(spawn("chain", 20 + i as u32, move || {
            loop {
                CHAIN_SEMS[i].take().expect("take");
                let stop = stopping();
                if i + 1 < CHAIN {
                    let _ = CHAIN_SEMS[i + 1].give();
                } else if !stop {
                    count();
                }
                if stop {
                    break;
                }
            }
        }));
    }
    measure("preempt", cfg, threads, || {});
    // Leftover units (a give after its taker had left) must not leak into a later run.
    for s in &CHAIN_SEMS {
        while s.try_take().is_ok() {}
    }
}

fn on_irq_count(_: usize) {
    count();
}

static IRQ_SEM: Semaphore = Semaphore::new(0, 1);

fn on_irq_give(_: usize) {
    let _ = IRQ_SEM.give();
}

/// A raiser thread for `vector`, stopped by `STOP`.
fn raiser(vector: u8) -> JoinHandle {
    spawn("raiser", WORKER, move || {
        while !stopping() {
            rhea::irq::raise_self(vector);
        }
    })
}

fn irq(cfg: &Config) {
    match rhea::irq::register_fast(on_irq_count, 0) {
        Ok(vector) => measure("irq", cfg, alloc::vec![raiser(vector)], || {}),
        Err(e) => rhea::println!("RESULT rtos irq skipped: no vector ({e:?})"),
    }
}

fn irq_preempt(cfg: &Config) {
    let vector = match rhea::irq::register_fast(on_irq_give, 0) {
        Ok(v) => v,
        Err(e) => {
            rhea::println!("RESULT rtos irq_preempt skipped: no vector ({e:?})");
            return;
        }
    };
    let waiter = spawn("irq-waiter", 50, || {
        loop {
            IRQ_SEM.take().expect("take");
            if stopping() {
                break;
            }
            count();
        }
    });
    // The raiser is joined first (through the list order), then the waiter released.
    let threads = alloc::vec![raiser(vector), waiter];
    measure("irq_preempt", cfg, threads, || {
        let _ = IRQ_SEM.give();
    });
    while IRQ_SEM.try_take().is_ok() {}
}

fn msg(cfg: &Config) {
    let q = Arc::new(MessageQueue::<[u8; 16], 8>::new());
    let t = spawn("msg", WORKER, move || {
        let mut m = [0u8; 16];
        while !stopping() {
            m[0] = m[0].wrapping_add(1);
            q.send(black_box(m)).map_err(|(_, e)| e).expect("send");
            m = black_box(q.recv().expect("recv"));
            count();
        }
    });
    measure("msg", cfg, alloc::vec![t], || {});
}

fn sem(cfg: &Config) {
    static SEM: Semaphore = Semaphore::new(1, 1);
    let t = spawn("sem", WORKER, || {
        while !stopping() {
            SEM.take().expect("take");
            SEM.give().expect("give");
            count();
        }
    });
    measure("sem", cfg, alloc::vec![t], || {});
}

fn mutex(cfg: &Config) {
    static MUTEX: Mutex<u64> = Mutex::new(0);
    let t = spawn("mutex", WORKER, || {
        while !stopping() {
            let mut g = MUTEX.lock().expect("lock");
            *g = black_box(*g + 1);
            drop(g);
            count();
        }
    });
    measure("mutex", cfg, alloc::vec![t], || {});
}

fn events(cfg: &Config) {
    static EVENTS: EventFlags = EventFlags::new();
    let t = spawn("events", WORKER, || {
        while !stopping() {
            EVENTS.set(black_box(1));
            EVENTS
                .wait(1, WaitMode::Any, true, None)
                .expect("the flag is set");
            count();
        }
    });
    measure("events", cfg, alloc::vec![t], || {});
}

fn alloc_free(cfg: &Config) {
    let t = spawn("alloc", WORKER, || {
        while !stopping() {
            let v: Vec<u8> = Vec::with_capacity(black_box(128));
            drop(black_box(v));
            count();
        }
    });
    measure("alloc", cfg, alloc::vec![t], || {});
}

fn pool(cfg: &Config) {
    let pool = Arc::new(BlockPool::new(16, 128).expect("16 × 128 bytes"));
    let t = spawn("pool", WORKER, move || {
        while !stopping() {
            let b = pool.try_alloc().expect("one block out at a time");
            drop(black_box(b));
            count();
        }
    });
    measure("pool", cfg, alloc::vec![t], || {});
}

fn main() {
    let periods = rhea::cmdline_value("periods")
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(5);
    let period_ms = rhea::cmdline_value("period_ms")
        .and_then(|v| v.parse().ok())
        .filter(|&n: &u64| n > 0)
        .unwrap_or(200);
    let cfg = Config {
        periods,
        period: Duration::from_millis(period_ms),
    };
    rhea::thread::set_priority(rhea::thread::current(), prio(REPORTER)).expect("valid");
    rhea::println!(
        "RESULT conditions tsc_hz={} periods={periods} period_ms={period_ms} msg=rhea::sync::MessageQueue pool=rhea::sync::BlockPool",
        cycles_per_second()
    );
    basic(&cfg);
    coop(&cfg);
    preempt(&cfg);
    irq(&cfg);
    irq_preempt(&cfg);
    msg(&cfg);
    sem(&cfg);
    mutex(&cfg);
    events(&cfg);
    alloc_free(&cfg);
    pool(&cfg);
    rhea::println!("RESULT done");
}
