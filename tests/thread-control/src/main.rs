//! Test app: one thread controlling another that runs, waits or sleeps — on another CPU when
//! there is one. Each part reproduces a defect users met (the first three crashed the kernel
//! or broke its contracts before the fix):
//!
//! 1. suspend then at once resume a CPU-bound thread on another CPU, thousands of times, and
//!    check between rounds that a suspended thread does not advance (on return, `suspend`
//!    guarantees it is not running);
//! 2. a mutex, then a semaphore unit, handed to a waiter while it is suspended stays its own
//!    when it is resumed; a timeout that passes while suspended is reported as a timeout;
//! 3. the affinity of a thread running on another CPU is changed under the scheduler checker;
//!    once `set_affinity` returns, the thread never runs outside the new mask;
//! 4. a thread spawned suspended runs only once resumed; an interrupt handler suspends and
//!    resumes a thread (no waiting there: the suspension takes effect at the target CPU's next
//!    switch);
//! 5. bad input (exited threads, offline CPUs, priority 0, suspending oneself or blocking with
//!    a spin lock held) is refused with an error and changes nothing.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use rhea::sync::{EventFlags, IrqsOff, Mutex, Semaphore, SpinLock, SyncError, WaitMode};
use rhea::thread::{self, Builder, CpuSet, Priority, SchedError};
use rhea::time::Duration;

rhea::main!(main);

fn prio(level: u32) -> Priority {
    Priority::new(level).expect("1..=63")
}

/// The CPU this app's control threads are pinned to, and another one if there is one.
fn cpus() -> (usize, Option<usize>) {
    let online = thread::online_cpus();
    let first = online.first().unwrap_or(0);
    (first, online.iter().find(|&c| c != first))
}

fn main() -> Result<(), &'static str> {
    let (first, _) = cpus();
    // Run the controller pinned to the first CPU at a priority above the targets'.
    let failed = Arc::new(AtomicBool::new(false));
    let f = failed.clone();
    Builder::new()
        .name("controller")
        .priority(prio(30))
        .affinity(CpuSet::single(first))
        .spawn(move || {
            if let Err(e) = control() {
                rhea::println!("control: FAIL: {e}");
                f.store(true, Ordering::Relaxed);
            }
        })
        .map_err(|_| "spawn controller")?
        .join()
        .map_err(|_| "join controller")?;
    if failed.load(Ordering::Relaxed) {
        return Err("a thread-control contract was broken");
    }
    rhea::println!("control: PASS");
    Ok(())
}

fn control() -> Result<(), &'static str> {
    suspend_resume_storm()?;
    wake_reasons()?;
    affinity_of_a_running_thread()?;
    spawned_suspended()?;
    from_an_interrupt_handler()?;
    bad_input()?;
    Ok(())
}

/// 1: a CPU-bound spinner (on another CPU if there is one) suspended and resumed in a loop.
fn suspend_resume_storm() -> Result<(), &'static str> {
    let (first, other) = cpus();
    static SPINS: AtomicU64 = AtomicU64::new(0);
    static STOP: AtomicBool = AtomicBool::new(false);
    STOP.store(false, Ordering::Relaxed);
    let mask = other.map_or(CpuSet::single(first), CpuSet::single);
    let spinner = Builder::new()
        .name("spinner")
        .priority(prio(10))
        .affinity(mask)
        .spawn(|| {
            while !STOP.load(Ordering::Relaxed) {
                let n = SPINS.fetch_add(1, Ordering::Relaxed);
                if n.is_multiple_of(256) {
                    // A clock read now and then: the simulation mode (rhea.sim=1) delivers
                    // its timer interrupts only there. Elsewhere this changes nothing.
                    let _ = rhea::time::now();
                }
            }
        })
        .map_err(|_| "spawn spinner")?;
    let id = spinner.id();
    const ROUNDS: u32 = 3000;
    let (mut frozen_checks, mut ran_between) = (0u32, 0u32);
    for round in 0..ROUNDS {
        thread::suspend(id).map_err(|_| "suspend")?;
        if round.is_multiple_of(4) {
            // Suspended: it must not advance, however long we look.
            let before = SPINS.load(Ordering::Relaxed);
            for _ in 0..200 {
                core::hint::spin_loop();
            }
            if SPINS.load(Ordering::Relaxed) != before {
                return Err("a suspended thread kept running");
            }
            frozen_checks += 1;
        }
        thread::resume(id).map_err(|_| "resume")?;
        if round.is_multiple_of(64) {
            // It must run again once resumed. On one CPU it runs only while we sleep, and a
            // short sleep can end before it gets a single instruction in (Xen on x86 under
            // TCG: a clock read ~31 µs, a hypercall ~89 µs), so wait for it, doubling the
            // sleep, up to 2 s in all — thousands of times what a resumed thread needs.
            let before = SPINS.load(Ordering::Relaxed);
            let mut nap = Duration::from_micros(100);
            let deadline = rhea::time::now().saturating_add(Duration::from_secs(2));
            while SPINS.load(Ordering::Relaxed) == before && rhea::time::now() < deadline {
                thread::sleep(nap);
                nap = nap.saturating_mul(2).min(Duration::from_millis(100));
            }
            if SPINS.load(Ordering::Relaxed) == before {
                return Err("a resumed thread did not run again within 2 s");
            }
            ran_between += 1;
        }
    }
    STOP.store(true, Ordering::Relaxed);
    spinner.join().map_err(|_| "join spinner")?;
    rhea::println!(
        "control: suspend/resume of a running thread: {ROUNDS} rounds on cpu{} from cpu{first}, {frozen_checks} checked frozen, ran again after each of {ran_between} of {} resumes checked",
        other.unwrap_or(first),
        ROUNDS.div_ceil(64)
    );
    Ok(())
}

/// 2: wake reasons survive suspension. Each waiter is more important than the controller and
/// pinned to its CPU, so by the time `spawn` returns here it has run and blocked.
fn wake_reasons() -> Result<(), &'static str> {
    let (first, _) = cpus();
    static M: Mutex<u32> = Mutex::new(0);
    static RESULT: AtomicUsize = AtomicUsize::new(0);
    let guard = M.lock().map_err(|_| "lock")?;
    let waiter = Builder::new()
        .name("mutex-waiter")
        .priority(prio(40))
        .affinity(CpuSet::single(first))
        .spawn(|| {
            let r = match M.lock() {
                Ok(mut g) => {
                    *g += 1;
                    1
                }
                Err(SyncError::Timeout) => 2,
                Err(_) => 3,
            };
            RESULT.store(r, Ordering::Relaxed);
        })
        .map_err(|_| "spawn")?;
    thread::suspend(waiter.id()).map_err(|_| "suspend waiter")?;
    drop(guard); // handed to the suspended waiter
    if M.try_lock().is_ok() {
        return Err("the mutex was free after its hand-off to a suspended waiter");
    }
    thread::resume(waiter.id()).map_err(|_| "resume waiter")?;
    waiter.join().map_err(|_| "join")?;
    match RESULT.load(Ordering::Relaxed) {
        1 => {}
        2 => return Err("lock() of a resumed waiter returned 'timed out' while owning the mutex"),
        _ => return Err("lock() of a resumed waiter failed"),
    }
    match M.try_lock() {
        Ok(g) if *g == 1 => {}
        Ok(_) => return Err("the waiter's update was lost"),
        Err(_) => return Err("the mutex was leaked by its resumed owner"),
    }
    rhea::println!("control: a mutex handed to a suspended waiter stays its own");

    static S: Semaphore = Semaphore::new(0, 4);
    RESULT.store(0, Ordering::Relaxed);
    let waiter = Builder::new()
        .name("sem-waiter")
        .priority(prio(40))
        .affinity(CpuSet::single(first))
        .spawn(|| {
            let r = match S.take() {
                Ok(()) => 1,
                Err(_) => 2,
            };
            RESULT.store(r, Ordering::Relaxed);
        })
        .map_err(|_| "spawn")?;
    thread::suspend(waiter.id()).map_err(|_| "suspend")?;
    S.give().map_err(|_| "give")?;
    if S.count() != 0 {
        return Err("the unit did not go to the waiting thread");
    }
    thread::resume(waiter.id()).map_err(|_| "resume")?;
    waiter.join().map_err(|_| "join")?;
    if RESULT.load(Ordering::Relaxed) != 1 || S.count() != 0 {
        return Err("the unit given to a suspended waiter was lost");
    }
    rhea::println!("control: a semaphore unit given to a suspended waiter stays its own");

    // The waiter must still be waiting when it is suspended: a host that stalls this guest
    // (nested KVM on CI: 26 ms of steal in one run) can let a short timeout end first, and
    // the waiter exit. Then the round is run again with a timeout ten times as long.
    static TIMEOUT_MS: AtomicU64 = AtomicU64::new(0);
    let mut waiter = None;
    for timeout_ms in [2, 20, 200, 2000] {
        RESULT.store(0, Ordering::Relaxed);
        TIMEOUT_MS.store(timeout_ms, Ordering::Relaxed);
        let w = Builder::new()
            .name("sem-timeout")
            .priority(prio(40))
            .affinity(CpuSet::single(first))
            .spawn(|| {
                let t = Duration::from_millis(TIMEOUT_MS.load(Ordering::Relaxed));
                let r = match S.take_timeout(t) {
                    Ok(()) => 1,
                    Err(SyncError::Timeout) => 2,
                    Err(_) => 3,
                };
                RESULT.store(r, Ordering::Relaxed);
            })
            .map_err(|_| "spawn")?;
        match thread::suspend(w.id()) {
            Ok(()) => {
                waiter = Some((w, timeout_ms));
                break;
            }
            // It finished its wait before the suspension came: too late, again.
            Err(SchedError::NoSuchThread) if RESULT.load(Ordering::Relaxed) != 0 => {
                w.join().map_err(|_| "join")?;
                rhea::println!(
                    "control: the {timeout_ms} ms wait ended before its suspension; again"
                );
            }
            Err(_) => return Err("suspend"),
        }
    }
    let (waiter, timeout_ms) = waiter.ok_or("the waiter always finished before its suspension")?;
    // The timeout passes while it is suspended.
    thread::sleep(Duration::from_millis(timeout_ms * 5));
    S.give().map_err(|_| "give")?;
    thread::resume(waiter.id()).map_err(|_| "resume")?;
    waiter.join().map_err(|_| "join")?;
    if RESULT.load(Ordering::Relaxed) != 2 || S.count() != 1 {
        return Err("a timeout that passed while suspended was not reported as one");
    }
    S.try_take().map_err(|_| "take back")?;
    rhea::println!("control: a timeout while suspended is a timeout; the later unit stays");
    Ok(())
}

/// 3: a spinner running on another CPU is re-pinned to ours and back, many times. A sample
/// it takes while no change is in flight must be inside the mask the last change set.
fn affinity_of_a_running_thread() -> Result<(), &'static str> {
    let (first, Some(other)) = cpus() else {
        rhea::println!("control: affinity of a running thread: skipped (one CPU)");
        return Ok(());
    };
    /// `generation << 32 | mask` of the last change that returned; 0 while one is in flight
    /// (a seqlock: a sample between two equal non-zero reads saw no change start).
    static SETTLED: AtomicU64 = AtomicU64::new(0);
    static SAMPLES: AtomicU64 = AtomicU64::new(0);
    static OUTSIDE: AtomicU64 = AtomicU64::new(0);
    static STOP: AtomicBool = AtomicBool::new(false);
    let spinner = Builder::new()
        .name("mover")
        .priority(prio(10))
        .affinity(CpuSet::single(other))
        .spawn(|| {
            while !STOP.load(Ordering::Relaxed) {
                let _ = rhea::time::now(); // the simulation mode's timer fires at clock reads
                let before = SETTLED.load(Ordering::SeqCst);
                let cpu = thread::current_cpu();
                let after = SETTLED.load(Ordering::SeqCst);
                if before != 0 && before == after {
                    SAMPLES.fetch_add(1, Ordering::Relaxed);
                    if before & (1 << cpu) == 0 {
                        OUTSIDE.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
        .map_err(|_| "spawn")?;
    const MOVES: u64 = 400;
    for round in 0..MOVES {
        let target = if round.is_multiple_of(2) {
            first
        } else {
            other
        };
        SETTLED.store(0, Ordering::SeqCst);
        thread::set_affinity(spinner.id(), CpuSet::single(target)).map_err(|e| {
            rhea::println!("control: set_affinity to cpu{target} in round {round}: {e:?}");
            "set_affinity"
        })?;
        SETTLED.store((round + 1) << 32 | 1 << target, Ordering::SeqCst);
        // On our own CPU it runs only while we sleep.
        thread::sleep(Duration::from_micros(100));
    }
    STOP.store(true, Ordering::Relaxed);
    SETTLED.store(0, Ordering::SeqCst);
    thread::set_affinity(spinner.id(), CpuSet::ALL).map_err(|_| "set_affinity")?;
    spinner.join().map_err(|_| "join")?;
    let (samples, outside) = (
        SAMPLES.load(Ordering::Relaxed),
        OUTSIDE.load(Ordering::Relaxed),
    );
    if outside != 0 {
        rhea::println!("control: {outside} of {samples} samples outside the settled affinity");
        return Err("a thread ran outside its affinity after set_affinity returned");
    }
    if samples == 0 {
        return Err("the re-pinned thread never ran");
    }
    rhea::println!(
        "control: affinity of a running thread: {MOVES} moves between cpu{first} and cpu{other}, {samples} samples, none outside"
    );
    Ok(())
}

/// 4: spawn suspended, adjust, resume.
fn spawned_suspended() -> Result<(), &'static str> {
    static RAN: AtomicU64 = AtomicU64::new(0);
    let h = Builder::new()
        .name("late")
        .priority(prio(50)) // more important than us: it would run at once if it could
        .spawn_suspended(|| {
            RAN.fetch_add(1, Ordering::SeqCst);
        })
        .map_err(|_| "spawn_suspended")?;
    thread::sleep(Duration::from_millis(5));
    if RAN.load(Ordering::SeqCst) != 0 {
        return Err("a thread spawned suspended ran before it was resumed");
    }
    thread::set_priority(h.id(), prio(45)).map_err(|_| "set_priority")?;
    thread::resume(h.id()).map_err(|_| "resume")?;
    h.join().map_err(|_| "join")?;
    if RAN.load(Ordering::SeqCst) != 1 {
        return Err("a thread spawned suspended did not run once resumed");
    }
    rhea::println!("control: spawned suspended: ran only after resume");
    Ok(())
}

/// What the self-IPI handler does to `TARGET`: 1 suspend, 2 resume.
static ISR_MODE: AtomicU64 = AtomicU64::new(0);
/// The handler's results: 1 Ok, 2 Err; and how many times it ran.
static ISR_RESULT: AtomicU64 = AtomicU64::new(0);
static ISR_RUNS: AtomicU64 = AtomicU64::new(0);

fn on_self_ipi(_: usize) {
    let Some(id) = TARGET.get() else { return };
    let r = match ISR_MODE.load(Ordering::SeqCst) {
        1 => thread::suspend(*id),
        2 => thread::resume(*id),
        _ => Ok(()),
    };
    ISR_RESULT.store(if r.is_ok() { 1 } else { 2 }, Ordering::SeqCst);
    ISR_RUNS.fetch_add(1, Ordering::SeqCst);
}

static TARGET: spin::Once<thread::ThreadId> = spin::Once::new();

/// 4b: suspend and resume from an interrupt handler (a self-IPI on the controller's CPU) a
/// spinner that runs on another CPU when there is one.
fn from_an_interrupt_handler() -> Result<(), &'static str> {
    let (first, other) = cpus();
    static SPINS: AtomicU64 = AtomicU64::new(0);
    static STOP: AtomicBool = AtomicBool::new(false);
    let spinner = Builder::new()
        .name("isr-target")
        .priority(prio(10))
        .affinity(other.map_or(CpuSet::single(first), CpuSet::single))
        .spawn(|| {
            while !STOP.load(Ordering::Relaxed) {
                let n = SPINS.fetch_add(1, Ordering::Relaxed);
                if n.is_multiple_of(256) {
                    let _ = rhea::time::now(); // the simulation mode's timer fires at clock reads
                }
            }
        })
        .map_err(|_| "spawn")?;
    TARGET.call_once(|| spinner.id());
    let vector = rhea::irq::register_fast(on_self_ipi, 0).map_err(|_| "register_fast")?;
    let raise = |mode: u64| -> Result<(), &'static str> {
        let runs = ISR_RUNS.load(Ordering::SeqCst);
        ISR_MODE.store(mode, Ordering::SeqCst);
        rhea::irq::raise_self(vector);
        // The self-IPI is taken on this CPU before long; wait for it (bounded).
        let deadline = rhea::time::now().saturating_add(Duration::from_secs(2));
        while ISR_RUNS.load(Ordering::SeqCst) == runs && rhea::time::now() < deadline {
            thread::sleep(Duration::from_micros(100));
        }
        match (
            ISR_RUNS.load(Ordering::SeqCst) > runs,
            ISR_RESULT.load(Ordering::SeqCst),
        ) {
            (true, 1) => Ok(()),
            (true, _) => Err("a suspend or resume from an interrupt handler failed"),
            (false, _) => Err("the self-IPI never ran its handler"),
        }
    };
    const ROUNDS: u32 = 50;
    for _ in 0..ROUNDS {
        raise(1)?;
        // From thread context, suspend again: already pending, this only waits until the
        // target has left its CPU. Then it must not advance.
        thread::suspend(spinner.id()).map_err(|_| "suspend")?;
        let before = SPINS.load(Ordering::SeqCst);
        thread::sleep(Duration::from_micros(200));
        if SPINS.load(Ordering::SeqCst) != before {
            return Err("a thread suspended from an interrupt handler kept running");
        }
        raise(2)?;
        let deadline = rhea::time::now().saturating_add(Duration::from_secs(2));
        let mut nap = Duration::from_micros(100);
        while SPINS.load(Ordering::SeqCst) == before && rhea::time::now() < deadline {
            thread::sleep(nap);
            nap = nap.saturating_mul(2).min(Duration::from_millis(100));
        }
        if SPINS.load(Ordering::SeqCst) == before {
            return Err("a thread resumed from an interrupt handler did not run again");
        }
    }
    STOP.store(true, Ordering::Relaxed);
    spinner.join().map_err(|_| "join")?;
    rhea::println!(
        "control: from an interrupt handler: {ROUNDS} suspend/resume rounds of a thread on cpu{}",
        other.unwrap_or(first)
    );
    Ok(())
}

/// 5: bad input gets an error, and the state is unchanged.
fn bad_input() -> Result<(), &'static str> {
    let expect = |what: &str, got: Result<(), SchedError>, want: SchedError| {
        if got == Err(want) {
            Ok(())
        } else {
            rhea::println!("control: {what}: got {got:?}, want {want:?}");
            Err("bad input was not refused as it should be")
        }
    };
    let h = Builder::new()
        .name("short")
        .spawn(|| {})
        .map_err(|_| "spawn")?;
    let gone = h.id();
    h.join().map_err(|_| "join")?;
    expect(
        "suspend(exited)",
        thread::suspend(gone),
        SchedError::NoSuchThread,
    )?;
    expect(
        "resume(exited)",
        thread::resume(gone),
        SchedError::NoSuchThread,
    )?;
    expect(
        "set_priority(exited)",
        thread::set_priority(gone, prio(5)),
        SchedError::NoSuchThread,
    )?;
    expect(
        "set_affinity(exited)",
        thread::set_affinity(gone, CpuSet::ALL),
        SchedError::NoSuchThread,
    )?;
    let me = thread::current();
    let offline = (0..64)
        .find(|&c| !thread::online_cpus().contains(c))
        .ok_or("no offline CPU")?;
    expect(
        "set_affinity(offline CPU only)",
        thread::set_affinity(me, CpuSet::single(offline)),
        SchedError::NoUsableCpu,
    )?;
    if !CpuSet::single(thread::current_cpu()).contains(cpus().0) {
        return Err("a refused affinity moved the caller");
    }
    expect(
        "set_priority(0)",
        thread::set_priority(me, Priority::IDLE),
        SchedError::BadPriority,
    )?;
    if Priority::new(64).is_ok() || Priority::new(1000).is_ok() {
        return Err("an out-of-range priority was accepted");
    }
    if thread::effective_priority(me) != Some(prio(30)) {
        return Err("a refused priority changed the caller's");
    }
    // Suspending oneself, or blocking, with an interrupt-disabling spin lock held.
    static LOCK: SpinLock<u32, IrqsOff> = SpinLock::new(0);
    static HELD: Semaphore = Semaphore::new(0, 1);
    // A unit there and a free mutex: a call that may wait is refused all the same (it must
    // not succeed or fail by whether it happened to need to wait); the try forms are allowed.
    static AVAILABLE: Semaphore = Semaphore::new(1, 1);
    static FREE: Mutex<u32> = Mutex::new(0);
    static SET: EventFlags = EventFlags::new();
    SET.set(0b1);
    let g = LOCK.lock();
    let suspended = thread::suspend(me);
    let blocked = HELD.take_timeout(Duration::from_millis(1));
    let took = AVAILABLE.take_timeout(Duration::from_millis(1)).err();
    let locked = FREE.lock().err();
    let tried_take = AVAILABLE.try_take();
    let tried_lock = FREE.try_lock().map(drop);
    let waited = SET.wait(0b1, WaitMode::Any, false, None).err();
    let tried_wait = SET.try_wait(0b1, WaitMode::Any, false);
    let tried_unset = SET.try_wait(0b10, WaitMode::Any, false);
    drop(g);
    let atomic = Some(SyncError::Sched(SchedError::AtomicContext));
    if took != atomic
        || locked != atomic
        || waited != atomic
        || tried_take.is_err()
        || tried_lock.is_err()
        || tried_wait != Ok(0b1)
        || tried_unset != Err(SyncError::WouldBlock)
    {
        rhea::println!(
            "control: under a spin lock: take {took:?} lock {locked:?} wait {waited:?} try_take {tried_take:?} try_lock {tried_lock:?} try_wait {tried_wait:?} (unset {tried_unset:?})"
        );
        return Err("a wait that happened not to be needed was allowed with interrupts off");
    }
    expect(
        "suspend(self) under a spin lock",
        suspended,
        SchedError::AtomicContext,
    )?;
    if blocked != Err(SyncError::Sched(SchedError::AtomicContext)) {
        rhea::println!("control: take under a spin lock: {blocked:?}");
        return Err("blocking with a spin lock held was not refused");
    }
    rhea::println!("control: bad input refused, state unchanged");
    Ok(())
}
