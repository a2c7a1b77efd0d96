//! Test app: 24 threads with random priorities and affinities (some pinned to one CPU) each do
//! 200 rounds of: lock one of three mutexes, bump a shared counter and a private one, unlock,
//! sometimes sleep, sometimes post a semaphore a collector thread waits on. Afterwards every
//! counter must match (no update lost, no wake-up lost), and no pinned thread may ever have
//! observed itself on a CPU outside its mask. Then priority inheritance across CPUs: a
//! low-priority owner pinned to one CPU inherits the priority of a waiter on another. The
//! scheduler checker (on in every test boot) verifies global priority order at every decision.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use rhea::sync::{Mutex, Semaphore};
use rhea::thread::{Builder, CpuSet, Priority};
use rhea::time::Duration;

rhea::main!(main);

const THREADS: u64 = 24;
const ROUNDS: u64 = 200;

static LOCKS: [Mutex<u64>; 3] = [Mutex::new(0), Mutex::new(0), Mutex::new(0)];
static POSTED: Semaphore = Semaphore::new(0, 1_000_000);
static MISPLACED: AtomicU64 = AtomicU64::new(0);
static BUMPS: AtomicU64 = AtomicU64::new(0);

fn main() -> Result<(), &'static str> {
    let online = rhea::thread::online_cpus();
    let n = online.iter().count() as u64;
    rhea::println!("smp: {THREADS} threads x {ROUNDS} rounds on {n} CPUs");
    let posts = Arc::new(AtomicU64::new(0));
    let collected = Arc::new(AtomicU64::new(0));
    let c = collected.clone();
    let collector = Builder::new()
        .name("collector")
        .priority(Priority::new(50).unwrap())
        .spawn(move || {
            while c.load(Ordering::Relaxed) < u64::MAX {
                if POSTED.take_timeout(Duration::from_millis(500)).is_err() {
                    return; // every post was collected (checked below)
                }
                c.fetch_add(1, Ordering::Relaxed);
            }
        })
        .map_err(|_| "spawn collector")?;
    let mut handles = Vec::new();
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..THREADS {
        let r = next();
        let prio = Priority::new(1 + (r % 40) as u32).unwrap();
        // A third pinned to one CPU, a third to a random pair, a third anywhere.
        let cpus: Vec<usize> = online.iter().collect();
        let mask = match i % 3 {
            0 => CpuSet::single(cpus[(r >> 8) as usize % cpus.len()]),
            1 => CpuSet::from_bits(
                (1 << cpus[(r >> 8) as usize % cpus.len()])
                    | (1 << cpus[(r >> 16) as usize % cpus.len()]),
            ),
            _ => CpuSet::ALL,
        };
        let (p, seed_i) = (posts.clone(), r);
        handles.push(
            Builder::new()
                .name("worker")
                .priority(prio)
                .affinity(mask)
                .stack_size(32 * 1024)
                .spawn(move || {
                    let mut s = seed_i | 1;
                    for _ in 0..ROUNDS {
                        s ^= s << 13;
                        s ^= s >> 7;
                        s ^= s << 17;
                        if !mask.contains(rhea::thread::current_cpu()) {
                            MISPLACED.fetch_add(1, Ordering::Relaxed);
                        }
                        let mut g = LOCKS[(s % 3) as usize].lock().expect("lock");
                        *g += 1;
                        drop(g);
                        BUMPS.fetch_add(1, Ordering::Relaxed);
                        match (s >> 8) % 4 {
                            0 => rhea::thread::sleep(Duration::from_micros(50 + (s >> 16) % 200)),
                            1 => {
                                p.fetch_add(1, Ordering::Relaxed);
                                POSTED.give().expect("give");
                            }
                            2 => rhea::thread::yield_now(),
                            _ => {}
                        }
                    }
                })
                .map_err(|_| "spawn worker")?,
        );
    }
    for h in handles {
        h.join().map_err(|_| "join")?;
    }
    collector.join().map_err(|_| "join collector")?;
    let total: u64 = LOCKS.iter().map(|l| *l.lock().expect("lock")).sum();
    let (posts, collected) = (
        posts.load(Ordering::Relaxed),
        collected.load(Ordering::Relaxed),
    );
    rhea::println!(
        "smp: mutex-protected total {total}, bumps {}, posts {posts}, collected {collected}, misplaced {}",
        BUMPS.load(Ordering::Relaxed),
        MISPLACED.load(Ordering::Relaxed)
    );
    if total != THREADS * ROUNDS
        || BUMPS.load(Ordering::Relaxed) != total
        || posts != collected
        || MISPLACED.load(Ordering::Relaxed) != 0
    {
        return Err("lost updates, lost wake-ups or a pinned thread ran elsewhere");
    }
    rhea::println!("smp: counters match, no lost wake-ups, pinned threads never ran elsewhere");

    // Priority inheritance across CPUs: low (pinned to the first CPU) holds a mutex; high
    // (pinned to the last) waits for it; low must then run at high's priority.
    let (first, last) = (
        online.first().unwrap_or(0),
        online.iter().last().unwrap_or(0),
    );
    static PI: Mutex<()> = Mutex::new(());
    static LOW_EFF: AtomicU64 = AtomicU64::new(0);
    static LOW_HOLDS: AtomicU64 = AtomicU64::new(0);
    let low = Builder::new()
        .name("pi-low")
        .priority(Priority::new(3).unwrap())
        .affinity(CpuSet::single(first))
        .spawn(|| {
            let g = PI.lock().expect("lock");
            LOW_HOLDS.store(1, Ordering::Release);
            let me = rhea::thread::current();
            // Spin (sleeping would still hold the mutex, but spinning shows the boost while
            // running) until high's wait lifts us to its priority, or a generous deadline: on
            // LinuxU the vCPUs are host threads the host may deschedule for a long time, so a
            // short fixed window would measure the host, not the kernel.
            let t0 = rhea::time::now();
            while rhea::time::now().saturating_duration_since(t0) < Duration::from_secs(5) {
                let eff = rhea::thread::effective_priority(me).map_or(0, |p| p.level() as u64);
                LOW_EFF.fetch_max(eff, Ordering::Relaxed);
                if eff == 45 {
                    break;
                }
            }
            drop(g);
        })
        .map_err(|_| "spawn")?;
    // High must find the mutex held: wait until low has it.
    while LOW_HOLDS.load(Ordering::Acquire) == 0 {
        rhea::thread::sleep(Duration::from_millis(1));
    }
    let high = Builder::new()
        .name("pi-high")
        .priority(Priority::new(45).unwrap())
        .affinity(CpuSet::single(last))
        .spawn(|| {
            drop(PI.lock().expect("lock"));
        })
        .map_err(|_| "spawn")?;
    high.join().map_err(|_| "join")?;
    low.join().map_err(|_| "join")?;
    if LOW_EFF.load(Ordering::Relaxed) != 45 {
        return Err("the owner did not inherit the waiter's priority across CPUs");
    }
    rhea::println!("smp: cross-CPU priority inheritance held");
    // From a thread pinned to the first CPU, so the caller cannot move between targets.
    let first = rhea::thread::online_cpus().first().ok_or("no CPU online")?;
    Builder::new()
        .name("caller")
        .affinity(CpuSet::single(first))
        .spawn(|| {
            if let Err(e) = cross_cpu_calls() {
                rhea::println!("smp: cross-CPU calls: {e}");
                CALLS_FAILED.store(1, Ordering::Relaxed);
            }
        })
        .map_err(|_| "spawn")?
        .join()
        .map_err(|_| "join")?;
    if CALLS_FAILED.load(Ordering::Relaxed) != 0 {
        return Err("cross-CPU calls misbehaved");
    }
    migrating_reaper()?;
    rhea::println!("smp: PASS");
    Ok(())
}

const REAPS: u64 = 2000;
static REAPER_DONE: AtomicBool = AtomicBool::new(false);
static WORKER_SUM: AtomicU64 = AtomicU64::new(0);

/// Thread stacks freed by a reaper that is moved between two CPUs all the while, each worker
/// pinned to one of them in turn. A worker's stack reuses the slot its predecessor's was just
/// unmapped from, so any CPU left holding a translation of the old stack reaches the new one
/// through the old frames: the worker starts from whatever those hold (a wrong closure, so a
/// wrong sum, or a fault in the switch). A reaper moved between unmapping a stack and the TLB
/// shootdown once left exactly that behind on the CPU it moved to.
fn migrating_reaper() -> Result<(), &'static str> {
    let online = rhea::thread::online_cpus();
    let mut cpus = online.iter();
    let a = cpus.next().ok_or("no CPU online")?;
    // One CPU (the simulation mode): the same churn, with nowhere to move the reaper to.
    let b = cpus.next().unwrap_or(a);
    let reaper = Builder::new()
        .name("reaper")
        .priority(Priority::new(20).unwrap())
        .spawn(move || {
            for i in 0..REAPS {
                let on = if i.is_multiple_of(2) { a } else { b };
                let worker = Builder::new()
                    .name("worker")
                    .stack_size(16 * 1024)
                    .priority(Priority::new(20).unwrap())
                    .affinity(CpuSet::single(on))
                    .spawn(move || {
                        // Touch most of the stack so its pages are in this CPU's TLB.
                        let mut buf = [0u8; 8192];
                        core::hint::black_box(&mut buf)[i as usize % 8192] = 1;
                        WORKER_SUM.fetch_add(i + 1, Ordering::Relaxed);
                    });
                match worker {
                    Ok(w) => {
                        if w.join().is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            REAPER_DONE.store(true, Ordering::Release);
        })
        .map_err(|_| "spawn reaper")?;
    let id = reaper.id();
    let mut flips = 0u64;
    while !REAPER_DONE.load(Ordering::Acquire) {
        let to = if flips.is_multiple_of(2) { a } else { b };
        // The reaper may have just finished: an error then is expected.
        let _ = rhea::thread::set_affinity(id, CpuSet::single(to));
        flips += 1;
        rhea::thread::sleep(Duration::from_micros(20 + flips % 7 * 10));
    }
    reaper.join().map_err(|_| "join reaper")?;
    if WORKER_SUM.load(Ordering::Relaxed) != REAPS * (REAPS + 1) / 2 {
        return Err("a worker whose stack reused a freed slot did not run its own closure");
    }
    if a == b {
        rhea::println!(
            "smp: {REAPS} stacks reaped on cpu{a} alone; every worker ran its own closure"
        );
    } else {
        rhea::println!(
            "smp: {REAPS} stacks reaped by a thread moved {flips} times between cpu{a} and cpu{b}; every worker ran its own closure ({} TLB shootdowns in all, {} flushes of preempted CPUs left to the hypervisor)",
            rhea::smp::tlb_shootdowns(),
            rhea::smp::tlb_flushes_deferred()
        );
    }
    Ok(())
}

/// Where each CPU's call ran, by target (a call records the CPU it ran on).
static RAN_ON: [AtomicUsize; 64] = [const { AtomicUsize::new(usize::MAX) }; 64];
static BROADCAST_RUNS: AtomicUsize = AtomicUsize::new(0);
static CALLS_FAILED: AtomicUsize = AtomicUsize::new(0);

fn record(target: usize) {
    RAN_ON[target].store(rhea::thread::current_cpu(), Ordering::Relaxed);
}

fn count(_: usize) {
    BROADCAST_RUNS.fetch_add(1, Ordering::Relaxed);
}

/// A call aimed at one CPU runs there and nowhere else; a broadcast runs once on every other
/// online CPU; the call returns only after they ran.
fn cross_cpu_calls() -> Result<(), &'static str> {
    let online = rhea::thread::online_cpus();
    let me = rhea::thread::current_cpu();
    for target in online.iter() {
        rhea::smp::call_on(CpuSet::single(target), record, target).map_err(|_| "call_on")?;
        let ran = RAN_ON[target].load(Ordering::Relaxed);
        if target == me && ran != usize::MAX {
            return Err("a cross-CPU call ran on the calling CPU");
        }
        if target != me && ran != target {
            return Err("a cross-CPU call did not run on its target before returning");
        }
    }
    let others = online.iter().count() - 1;
    for _ in 0..10 {
        BROADCAST_RUNS.store(0, Ordering::Relaxed);
        rhea::smp::call_on(CpuSet::ALL, count, 0).map_err(|_| "call_on")?;
        if BROADCAST_RUNS.load(Ordering::Relaxed) != others {
            return Err("a broadcast call did not run exactly once on every other CPU");
        }
    }
    // A freed thread stack is unmapped and every CPU's TLB flushed, the caller's included
    // (where shootdowns exist: x86; Arm invalidates by broadcast and counts none).
    let flushes_before: Vec<u64> = online.iter().map(rhea::smp::tlb_flushes).collect();
    let shootdowns_before = rhea::smp::tlb_shootdowns();
    Builder::new()
        .name("short-lived")
        .spawn(|| {})
        .map_err(|_| "spawn")?
        .join()
        .map_err(|_| "join")?;
    if rhea::smp::tlb_shootdowns() > shootdowns_before
        && online
            .iter()
            .zip(&flushes_before)
            .any(|(cpu, &before)| rhea::smp::tlb_flushes(cpu) == before)
    {
        return Err("a TLB shootdown left some CPU (the caller's?) unflushed");
    }
    rhea::println!(
        "smp: cross-CPU calls ran where aimed, broadcasts once on each of {others} other CPUs; {} TLB shootdowns so far, each flushing every CPU ({} flushes of preempted CPUs left to the hypervisor)",
        rhea::smp::tlb_shootdowns(),
        rhea::smp::tlb_flushes_deferred()
    );
    Ok(())
}
