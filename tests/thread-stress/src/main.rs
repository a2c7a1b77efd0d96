//! Test app: a randomized, seeded stress of the real kernel's public thread and sync API
//! across CPUs, with the scheduler checker on (every test boot).
//!
//! - **Workers** (some pinned to one CPU, the rest anywhere) loop until told to stop, each
//!   step a random operation: lock/try_lock/lock_timeout one of three mutexes and update its
//!   counter non-atomically (with a yield inside the critical section); give/take/try_take/
//!   take_timeout a semaphore; produce/consume under a condition variable (wait_timeout);
//!   set/wait event flags (any, clear, timeout); send/receive on a message queue (try and
//!   timeout); sleep; yield.
//! - **Controllers**, one pinned to each CPU and more important than every worker, each run
//!   a fixed number of random operations on random workers: suspend (then check the worker
//!   does not advance) and resume; set_priority; set_affinity (then the worker checks every
//!   sample it takes against the mask, seqlock-style); spawn a child — sometimes suspended, to
//!   be adjusted and resumed — that does a few sync operations and exits, then join it and
//!   check that operations on its stale id are refused; sleep; yield.
//!
//! Afterwards every count must balance: each mutex counter equals the number of critical
//! sections entered; units given = units taken + units left; items produced = consumed + left;
//! messages sent = received + left (and their sums); every mutex is free; no suspended
//! worker advanced; no worker ran outside its settled affinity; pinned workers never ran
//! elsewhere.
//!
//! Each controller stops after `stress.ops=N` rounds (default 1500) or `stress.budget_ms=N`
//! (default 5000) of kernel time, whichever comes first.
//!
//! Seeded: `stress.seed=N` on the command line (default: `rhea.seed`, else the clock); the
//! seed is printed first, with the command that replays it. On real time boards the seed fixes
//! the operation sequences, not the interleaving; in `rhea.sim=1` it fixes everything.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use rhea::sync::{Condvar, EventFlags, MessageQueue, Mutex, Semaphore, SyncError, WaitMode};

/// The workers' message queue: 8 messages, stored inline.
type Queue = MessageQueue<u64, 8>;
use rhea::thread::{self, Builder, CpuSet, Priority, SchedError, ThreadId};
use rhea::time::Duration;

rhea::main!(main);

/// xorshift64*: small, seedable, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn prio(level: u32) -> Priority {
    Priority::new(level).expect("1..=63")
}

const WORKERS: usize = 8;
const CONTROLLER_PRIO: u32 = 50;

/// Per worker: what controllers and the checks need.
struct Worker {
    id: AtomicU64,
    /// Steps it has taken (it bumps this itself, nobody else).
    progress: AtomicU64,
    /// The controller holding its control token (0: none): only the holder suspends/resumes
    /// or re-pins it, so its checks are not confused by another controller's resume.
    token: AtomicUsize,
    /// Pinned for life to this CPU (`usize::MAX`: not pinned; controllers leave its
    /// affinity alone).
    pinned: usize,
    /// `generation << 32 | mask` of its last settled affinity, 0 while a change is in flight.
    settled: AtomicU64,
}

// Shared objects the workers and children hammer.
static LOCKS: [Mutex<u64>; 3] = [Mutex::new(0), Mutex::new(0), Mutex::new(0)];
static ENTERED: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static SEM: Semaphore = Semaphore::new(0, 1_000_000);
static GIVEN: AtomicU64 = AtomicU64::new(0);
static TAKEN: AtomicU64 = AtomicU64::new(0);
static CV_ITEMS: Mutex<u64> = Mutex::new(0);
static CV: Condvar = Condvar::new();
static PRODUCED: AtomicU64 = AtomicU64::new(0);
static CONSUMED: AtomicU64 = AtomicU64::new(0);
static EVENTS: EventFlags = EventFlags::new();
static EV_WAITS_OK: AtomicU64 = AtomicU64::new(0);
static EV_BAD: AtomicU64 = AtomicU64::new(0);
static SENT: AtomicU64 = AtomicU64::new(0);
static SENT_SUM: AtomicU64 = AtomicU64::new(0);
static RECEIVED: AtomicU64 = AtomicU64::new(0);
static RECEIVED_SUM: AtomicU64 = AtomicU64::new(0);
static UNEXPECTED: AtomicU64 = AtomicU64::new(0);

// Violations.
static RAN_SUSPENDED: AtomicU64 = AtomicU64::new(0);
static OUTSIDE_AFFINITY: AtomicU64 = AtomicU64::new(0);
static PINNED_ELSEWHERE: AtomicU64 = AtomicU64::new(0);
static EARLY_START: AtomicU64 = AtomicU64::new(0);
static BAD_ERRORS: AtomicU64 = AtomicU64::new(0);

// Operation counts (for the report).
static OPS: [AtomicU64; 12] = [const { AtomicU64::new(0) }; 12];
const OP_NAMES: [&str; 12] = [
    "suspend",
    "resume",
    "prio",
    "affinity",
    "spawn",
    "spawn-susp",
    "join",
    "sleep",
    "yield",
    "mutex",
    "sem",
    "other-sync",
];

static STOP: AtomicBool = AtomicBool::new(false);
/// Controllers still running: the last one to finish stops the workers. Not `main`: it runs
/// at the default priority, below most workers, and on one slow CPU (Xen under TCG, where a
/// clock read costs ~30-90 µs) workers that are always ready can starve it for good.
static CONTROLLERS_LEFT: AtomicUsize = AtomicUsize::new(0);
/// Controller rounds run (all controllers).
static ROUNDS: AtomicU64 = AtomicU64::new(0);

fn count(op: usize) {
    OPS[op].fetch_add(1, Ordering::Relaxed);
}

/// Set once every worker and controller has been joined (the watchdog's all-clear).
static FINISHED: AtomicBool = AtomicBool::new(false);

fn main() -> Result<(), &'static str> {
    let seed = rhea::cmdline_value("stress.seed")
        .or_else(|| rhea::cmdline_value("rhea.seed"))
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| rhea::time::now().as_nanos() ^ rhea::time::cycles());
    let ops_per_controller: u64 = rhea::cmdline_value("stress.ops")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    // A time budget too, so slow boards (Xen on x86 under TCG: ~30-90 µs a clock read or
    // hypercall) stay within their test time: controllers stop at whichever comes first.
    let budget_ms: u64 = rhea::cmdline_value("stress.budget_ms")
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let deadline = rhea::time::now().saturating_add(Duration::from_millis(budget_ms));
    rhea::println!(
        "stress: seed {seed} (replay: cargo xtask test --app thread-stress --append 'stress.seed={seed}' with the same --board/--machine and CPU count)"
    );
    // A watchdog above everything: a run still going 60 s past its budget is stalled (runs
    // end within ~0.3 s of it; 4 vCPUs under TCG on 2 host CPUs included): report every
    // thread's state and fail, instead of a silent harness timeout.
    Builder::new()
        .name("stress-watchdog")
        .priority(Priority::MAX)
        .stack_size(32 << 10)
        .spawn(move || {
            thread::sleep_until(deadline.saturating_add(Duration::from_secs(60)));
            if !FINISHED.load(Ordering::Acquire) {
                rhea::println!(
                    "stress: STALLED: still running 60 s past the {budget_ms} ms budget (seed {seed}); threads:"
                );
                thread::print_threads();
                rhea::exit(rhea::ExitStatus::Failure);
            }
        })
        .map(drop)
        .map_err(|_| "spawn the watchdog")?;
    // Above the workers while it sets up: spawned workers that outrank `main` would otherwise
    // run first, and on one slow CPU they used up the whole budget before a controller existed.
    thread::set_priority(thread::current(), prio(CONTROLLER_PRIO + 1))
        .map_err(|_| "raise main above the workers")?;
    let online: Vec<usize> = thread::online_cpus().iter().collect();
    let mut rng = Rng::new(seed);
    let queue: Arc<Queue> = Arc::new(Queue::new());

    // Workers: a quarter pinned, priorities 1..=40.
    let mut workers: Vec<Arc<Worker>> = Vec::new();
    let mut handles = Vec::new();
    for i in 0..WORKERS {
        let pinned = if i.is_multiple_of(4) {
            online[rng.below(online.len() as u64) as usize]
        } else {
            usize::MAX
        };
        let w = Arc::new(Worker {
            id: AtomicU64::new(0),
            progress: AtomicU64::new(0),
            token: AtomicUsize::new(0),
            pinned,
            settled: AtomicU64::new(0),
        });
        let affinity = if pinned == usize::MAX {
            CpuSet::ALL
        } else {
            CpuSet::single(pinned)
        };
        w.settled
            .store(1 << 32 | affinity.bits() & 0xffff_ffff, Ordering::SeqCst);
        let (w2, q, wseed) = (w.clone(), queue.clone(), rng.next());
        let h = Builder::new()
            .name("worker")
            .priority(prio(1 + rng.below(40) as u32))
            .affinity(affinity)
            .stack_size(32 * 1024)
            .spawn(move || worker(&w2, &q, wseed))
            .map_err(|_| "spawn worker")?;
        w.id.store(h.id().as_u64(), Ordering::SeqCst);
        workers.push(w);
        handles.push(h);
    }
    let ids: Arc<Vec<ThreadId>> = Arc::new(handles.iter().map(|h| h.id()).collect());

    // Controllers: one pinned to each CPU.
    let mut controllers = Vec::new();
    CONTROLLERS_LEFT.store(online.len(), Ordering::SeqCst);
    for (n, &cpu) in online.iter().enumerate() {
        let (ws, ids, q, cseed) = (workers.clone(), ids.clone(), queue.clone(), rng.next());
        controllers.push(
            Builder::new()
                .name("controller")
                .priority(prio(CONTROLLER_PRIO))
                .affinity(CpuSet::single(cpu))
                .stack_size(32 * 1024)
                .spawn(move || {
                    controller(n + 1, &ws, &ids, &q, cseed, ops_per_controller, deadline);
                    if CONTROLLERS_LEFT.fetch_sub(1, Ordering::SeqCst) == 1 {
                        STOP.store(true, Ordering::SeqCst);
                        CV.notify_all();
                    }
                })
                .map_err(|_| "spawn controller")?,
        );
    }
    for c in controllers {
        c.join().map_err(|_| "join controller")?;
    }
    for h in handles {
        h.join().map_err(|_| "join worker")?;
    }

    // Drain what is left, then balance every count.
    let mut left_units = 0u64;
    while SEM.try_take().is_ok() {
        left_units += 1;
    }
    let (mut left_msgs, mut left_sum) = (0u64, 0u64);
    while let Ok(v) = queue.try_recv() {
        left_msgs += 1;
        left_sum += v;
    }
    FINISHED.store(true, Ordering::Release);
    let left_items = *CV_ITEMS.lock().map_err(|_| "cv lock")?;
    let mut total = Vec::new();
    for (i, name) in OP_NAMES.iter().enumerate() {
        total.push((*name, OPS[i].load(Ordering::Relaxed)));
    }
    rhea::println!(
        "stress: ops {total:?} on {} CPUs ({} of {} controller rounds within {budget_ms} ms)",
        online.len(),
        ROUNDS.load(Ordering::Relaxed),
        ops_per_controller * online.len() as u64
    );
    let mut ok = true;
    for (m, lock) in LOCKS.iter().enumerate() {
        let value = match lock.try_lock() {
            Ok(g) => *g,
            Err(_) => {
                rhea::println!("stress: mutex {m} is still held after every thread ended");
                ok = false;
                continue;
            }
        };
        if value != ENTERED[m].load(Ordering::Relaxed) {
            rhea::println!(
                "stress: mutex {m}: counter {value} but {} critical sections",
                ENTERED[m].load(Ordering::Relaxed)
            );
            ok = false;
        }
    }
    let (given, taken) = (GIVEN.load(Ordering::Relaxed), TAKEN.load(Ordering::Relaxed));
    if given != taken + left_units {
        rhea::println!("stress: semaphore: {given} given, {taken} taken, {left_units} left");
        ok = false;
    }
    let (produced, consumed) = (
        PRODUCED.load(Ordering::Relaxed),
        CONSUMED.load(Ordering::Relaxed),
    );
    if produced != consumed + left_items {
        rhea::println!(
            "stress: condvar: {produced} produced, {consumed} consumed, {left_items} left"
        );
        ok = false;
    }
    let (sent, received) = (
        SENT.load(Ordering::Relaxed),
        RECEIVED.load(Ordering::Relaxed),
    );
    let (sent_sum, received_sum) = (
        SENT_SUM.load(Ordering::Relaxed),
        RECEIVED_SUM.load(Ordering::Relaxed),
    );
    if sent != received + left_msgs || sent_sum != received_sum + left_sum {
        rhea::println!(
            "stress: queue: {sent} sent (sum {sent_sum}), {received} received (sum {received_sum}), {left_msgs} left (sum {left_sum})"
        );
        ok = false;
    }
    for (what, counter) in [
        ("a suspended worker advanced", &RAN_SUSPENDED),
        (
            "a worker ran outside its settled affinity",
            &OUTSIDE_AFFINITY,
        ),
        ("a pinned worker ran elsewhere", &PINNED_ELSEWHERE),
        (
            "a child spawned suspended ran before its resume",
            &EARLY_START,
        ),
        ("an operation failed with an unexpected error", &UNEXPECTED),
        (
            "an operation on an exited thread was not refused",
            &BAD_ERRORS,
        ),
        ("an event wait returned bits it did not ask for", &EV_BAD),
    ] {
        let n = counter.load(Ordering::Relaxed);
        if n != 0 {
            rhea::println!("stress: {n} times: {what}");
            ok = false;
        }
    }
    if !ok {
        rhea::println!("stress: FAIL with seed {seed}");
        return Err("thread stress found a violation");
    }
    rhea::println!(
        "stress: counts balance, no suspended thread ran, no thread ran outside its affinity (units {given}, items {produced}, messages {sent}, event waits {})",
        EV_WAITS_OK.load(Ordering::Relaxed)
    );
    rhea::println!("stress: PASS");
    Ok(())
}

fn worker(w: &Worker, q: &Queue, seed: u64) {
    let mut rng = Rng::new(seed);
    while !STOP.load(Ordering::Relaxed) {
        w.progress.fetch_add(1, Ordering::SeqCst);
        let cpu = thread::current_cpu();
        if w.pinned != usize::MAX && cpu != w.pinned {
            PINNED_ELSEWHERE.fetch_add(1, Ordering::Relaxed);
        }
        // Seqlock sample of its affinity: no change started between the two reads.
        let before = w.settled.load(Ordering::SeqCst);
        let cpu = thread::current_cpu();
        if before != 0 && before == w.settled.load(Ordering::SeqCst) && before & (1 << cpu) == 0 {
            OUTSIDE_AFFINITY.fetch_add(1, Ordering::Relaxed);
        }
        sync_op(&mut rng, q);
    }
}

/// One random operation on the shared sync objects (workers and children).
fn sync_op(rng: &mut Rng, q: &Queue) {
    let unexpected = |e: SyncError| {
        if !matches!(e, SyncError::Timeout | SyncError::WouldBlock) {
            rhea::println!("stress: unexpected {e:?}");
            UNEXPECTED.fetch_add(1, Ordering::Relaxed);
        }
    };
    match rng.below(16) {
        0..=3 => {
            count(9);
            let m = rng.below(3) as usize;
            let g = match rng.below(3) {
                0 => LOCKS[m].lock(),
                1 => LOCKS[m].try_lock(),
                _ => LOCKS[m].lock_timeout(Duration::from_micros(rng.below(500))),
            };
            match g {
                Ok(mut g) => {
                    let v = *g;
                    if rng.below(4) == 0 {
                        thread::yield_now();
                    }
                    *g = v + 1;
                    ENTERED[m].fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => unexpected(e),
            }
        }
        4..=5 => {
            count(10);
            if SEM.give().is_ok() {
                GIVEN.fetch_add(1, Ordering::Relaxed);
            }
        }
        6..=7 => {
            count(10);
            let r = match rng.below(2) {
                0 => SEM.try_take(),
                _ => SEM.take_timeout(Duration::from_micros(rng.below(800))),
            };
            match r {
                Ok(()) => {
                    TAKEN.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => unexpected(e),
            }
        }
        8 => {
            count(11);
            match CV_ITEMS.lock() {
                Ok(mut g) => {
                    *g += 1;
                    PRODUCED.fetch_add(1, Ordering::Relaxed);
                    drop(g);
                    CV.notify_one();
                }
                Err(e) => unexpected(e),
            }
        }
        9 => {
            count(11);
            match CV_ITEMS.lock() {
                Ok(mut g) => {
                    if *g == 0 {
                        let (g2, _) = CV.wait_timeout(g, Duration::from_micros(rng.below(800)));
                        g = g2;
                    }
                    if *g > 0 {
                        *g -= 1;
                        CONSUMED.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => unexpected(e),
            }
        }
        10 => {
            count(11);
            EVENTS.set(1 << rng.below(4));
        }
        11 => {
            count(11);
            let mask = 1 + rng.below(15) as u32;
            match EVENTS.wait(
                mask,
                WaitMode::Any,
                true,
                Some(Duration::from_micros(rng.below(800))),
            ) {
                Ok(bits) => {
                    if bits & mask == 0 {
                        EV_BAD.fetch_add(1, Ordering::Relaxed);
                    }
                    EV_WAITS_OK.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => unexpected(e),
            }
        }
        12 => {
            count(11);
            let v = rng.below(1000);
            let r = if rng.below(2) == 0 {
                q.try_send(v)
            } else {
                q.send_timeout(v, Duration::from_micros(rng.below(800)))
            };
            match r {
                Ok(()) => {
                    SENT.fetch_add(1, Ordering::Relaxed);
                    SENT_SUM.fetch_add(v, Ordering::Relaxed);
                }
                Err((_, e)) => unexpected(e),
            }
        }
        13 => {
            count(11);
            let r = if rng.below(2) == 0 {
                q.try_recv()
            } else {
                q.recv_timeout(Duration::from_micros(rng.below(800)))
            };
            match r {
                Ok(v) => {
                    RECEIVED.fetch_add(1, Ordering::Relaxed);
                    RECEIVED_SUM.fetch_add(v, Ordering::Relaxed);
                }
                Err(e) => unexpected(e),
            }
        }
        14 => {
            count(7);
            thread::sleep(Duration::from_micros(rng.below(300)));
        }
        _ => {
            count(8);
            thread::yield_now();
        }
    }
}

fn controller(
    me: usize,
    workers: &[Arc<Worker>],
    ids: &[ThreadId],
    q: &Arc<Queue>,
    seed: u64,
    ops: u64,
    deadline: rhea::time::Instant,
) {
    let mut rng = Rng::new(seed);
    let online = thread::online_cpus();
    for _ in 0..ops {
        if rhea::time::now() >= deadline {
            break;
        }
        ROUNDS.fetch_add(1, Ordering::Relaxed);
        let i = rng.below(workers.len() as u64) as usize;
        let (w, id) = (&workers[i], ids[i]);
        match rng.below(10) {
            0..=2 => {
                // Suspend, check it is frozen, resume — holding its token.
                if w.token
                    .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
                count(0);
                if let Err(e) = thread::suspend(id) {
                    rhea::println!("stress: suspend: {e}");
                    UNEXPECTED.fetch_add(1, Ordering::Relaxed);
                }
                let before = w.progress.load(Ordering::SeqCst);
                match rng.below(3) {
                    0 => thread::yield_now(),
                    1 => thread::sleep(Duration::from_micros(rng.below(300))),
                    _ => {
                        for _ in 0..rng.below(2000) {
                            core::hint::spin_loop();
                        }
                    }
                }
                if w.progress.load(Ordering::SeqCst) != before {
                    RAN_SUSPENDED.fetch_add(1, Ordering::Relaxed);
                }
                count(1);
                if let Err(e) = thread::resume(id) {
                    rhea::println!("stress: resume: {e}");
                    UNEXPECTED.fetch_add(1, Ordering::Relaxed);
                }
                w.token.store(0, Ordering::Release);
            }
            3 => {
                count(2);
                if let Err(e) = thread::set_priority(id, prio(1 + rng.below(40) as u32)) {
                    rhea::println!("stress: set_priority: {e}");
                    UNEXPECTED.fetch_add(1, Ordering::Relaxed);
                }
            }
            4 => {
                if w.pinned != usize::MAX
                    || w.token
                        .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                        .is_err()
                {
                    continue;
                }
                count(3);
                let mut mask = rng.next() & online.bits();
                if mask == 0 {
                    mask = online.bits();
                }
                let generation = (w.settled.load(Ordering::SeqCst) >> 32) + 1;
                w.settled.store(0, Ordering::SeqCst);
                if let Err(e) = thread::set_affinity(id, CpuSet::from_bits(mask)) {
                    rhea::println!("stress: set_affinity: {e}");
                    UNEXPECTED.fetch_add(1, Ordering::Relaxed);
                }
                w.settled
                    .store(generation << 32 | (mask & 0xffff_ffff), Ordering::SeqCst);
                w.token.store(0, Ordering::Release);
            }
            5 => child(&mut rng, q, online),
            6 => {
                count(7);
                thread::sleep(Duration::from_micros(rng.below(500)));
            }
            _ => {
                count(8);
                thread::yield_now();
            }
        }
    }
}

/// Spawns a short-lived child (sometimes suspended first), joins it, then checks its stale id
/// is refused everywhere.
fn child(rng: &mut Rng, q: &Arc<Queue>, online: CpuSet) {
    let started = Arc::new(AtomicU32::new(0));
    let (s2, q2, cseed) = (started.clone(), q.clone(), rng.next());
    let suspended = rng.below(2) == 0;
    let b = Builder::new()
        .name("child")
        .priority(prio(1 + rng.below(60) as u32))
        .stack_size(16 * 1024);
    let body = move || {
        s2.store(1, Ordering::SeqCst);
        let mut r = Rng::new(cseed);
        for _ in 0..r.below(6) {
            sync_op(&mut r, &q2);
        }
    };
    let h = if suspended {
        count(5);
        b.spawn_suspended(body)
    } else {
        count(4);
        b.spawn(body)
    };
    let h = match h {
        Ok(h) => h,
        Err(e) => {
            rhea::println!("stress: spawn: {e}");
            UNEXPECTED.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    if suspended {
        thread::sleep(Duration::from_micros(rng.below(200)));
        if started.load(Ordering::SeqCst) != 0 {
            EARLY_START.fetch_add(1, Ordering::Relaxed);
        }
        let mask = match rng.next() & online.bits() {
            0 => online.bits(),
            m => m,
        };
        let adjusted = thread::set_affinity(h.id(), CpuSet::from_bits(mask))
            .and_then(|()| thread::set_priority(h.id(), prio(1 + rng.below(45) as u32)))
            .and_then(|()| thread::resume(h.id()));
        if let Err(e) = adjusted {
            rhea::println!("stress: adjusting a suspended child: {e}");
            UNEXPECTED.fetch_add(1, Ordering::Relaxed);
        }
    }
    let id = h.id();
    count(6);
    // Raised above the workers before the join: strict priority lets always-ready workers
    // starve a low child (and so this controller) for as long as they stay ready, which on a
    // slow CPU was tens of seconds. It lived its random priority until now.
    match thread::set_priority(id, prio(CONTROLLER_PRIO - 1)) {
        Ok(()) | Err(SchedError::NoSuchThread) => {}
        Err(e) => {
            rhea::println!("stress: raising a child to join it: {e}");
            UNEXPECTED.fetch_add(1, Ordering::Relaxed);
        }
    }
    if h.join().is_err() {
        UNEXPECTED.fetch_add(1, Ordering::Relaxed);
    }
    let refused = [
        thread::suspend(id),
        thread::resume(id),
        thread::set_priority(id, prio(3)),
        thread::set_affinity(id, CpuSet::ALL),
    ];
    if refused.iter().any(|r| *r != Err(SchedError::NoSuchThread)) {
        BAD_ERRORS.fetch_add(1, Ordering::Relaxed);
    }
}
