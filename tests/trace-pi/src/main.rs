//! Test app, and `cargo xtask trace`'s built-in scenario: a priority-inheritance chain across
//! CPUs, recorded with `rhea.trace=all`.
//!
//! - `low` (priority 5, on the last CPU) takes mutex A and works until it has inherited 30;
//! - `mid` (10, on CPU 0) takes mutex B, then blocks on A: low inherits 10;
//! - `high` (30, on CPU 0) blocks on B: mid inherits 30, and through mid's wait on A, low too;
//! - low releases A (back to 5), mid takes it, releases both (back to 10), high takes B.
//!
//! The trace must show, in order: low boosted to 10 by mid (depth 0), mid boosted to 30 by high
//! (depth 0), low boosted to 30 (depth 1), then the restores. The app checks what it can see
//! itself (the priorities it inherited, who finished first, the per-thread accounts) and
//! records its own events (`rhea::trace::{span, instant, counter}`); `cargo xtask trace` and
//! the tracing test case check the rest from the dump.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use rhea::sync::Mutex;
use rhea::thread::{Builder, CpuSet, Priority, effective_priority};
use rhea::time::{Duration, now};

rhea::main!(main);

static A: Mutex<u32> = Mutex::new(0);
static B: Mutex<u32> = Mutex::new(0);
/// Set once main has read the threads' accounts (they are gone once a thread exits).
static READ: AtomicBool = AtomicBool::new(false);

/// What each thread does last: waits for main to read the accounts.
fn linger() {
    let _ = wait_for("main to read the accounts", || READ.load(Ordering::Acquire));
}

fn prio(n: u32) -> Priority {
    Priority::new(n).unwrap()
}

/// Waits (sleeping 1 ms at a time, at most 10 s) until `cond` holds.
fn wait_for(what: &str, cond: impl Fn() -> bool) -> Result<(), &'static str> {
    let end = now().saturating_add(Duration::from_secs(10));
    while !cond() {
        if now() > end {
            rhea::println!("trace-pi: timed out waiting for {what}");
            return Err("timed out");
        }
        rhea::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Tracing controlled by the app: a category that does not exist is refused with the valid
/// ones named; a freeze keeps what came before the trigger and counts what comes after as
/// dropped (the tracing case checks the dump: "before the freeze" is in it, "after the
/// freeze" is not); a thaw records again.
fn control_at_run_time() -> Result<(), &'static str> {
    match rhea::trace::set_categories_str("sched,disk") {
        Err(e) => rhea::println!("trace-pi: refused: {e}"),
        Ok(()) => return Err("an unknown trace category was accepted"),
    }
    if rhea::trace::categories() != rhea_trace_all() {
        return Err("a refused category list changed the categories");
    }
    let dropped = || -> u64 { rhea::trace::counts().iter().map(|c| c.dropped).sum() };
    let before = dropped();
    rhea::trace::instant!("before the freeze");
    rhea::trace::freeze("trace-pi trigger");
    rhea::trace::instant!("after the freeze");
    let after = dropped();
    if !rhea::trace::is_frozen() || after <= before {
        return Err("a freeze did not stop recording");
    }
    rhea::println!(
        "trace-pi: frozen: {} event(s) after the trigger dropped and counted",
        after - before
    );
    rhea::trace::thaw();
    rhea::trace::instant!("thawed");
    if rhea::trace::is_frozen() || dropped() != after {
        return Err("a thaw did not record again");
    }
    Ok(())
}

/// Every category's bit (what `rhea.trace=all` turned on).
fn rhea_trace_all() -> u32 {
    [
        rhea::trace::Category::Sched,
        rhea::trace::Category::Irq,
        rhea::trace::Category::Net,
        rhea::trace::Category::App,
    ]
    .iter()
    .fold(0, |m, c| m | *c as u32)
}

fn main() -> Result<(), &'static str> {
    let cpus = rhea::thread::online_cpus();
    let last = cpus.iter().last().unwrap_or(0);
    // Digits appended as each finishes: 3 low (as it releases A), 1 high, 2 mid. High must
    // finish before mid: mid's release of B hands it to high, which preempts mid on CPU 0.
    let order = Arc::new(AtomicU32::new(0));
    let seen = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]); // low's inherited levels
    let low_holds = Arc::new(AtomicBool::new(false));

    let (o, s, h) = (order.clone(), seen.clone(), low_holds.clone());
    let low = Builder::new()
        .name("low")
        .priority(prio(5))
        .affinity(CpuSet::single(last))
        .spawn(move || {
            let _span = rhea::trace::span!("low holds A");
            let g = A.lock().expect("low locks A");
            h.store(true, Ordering::Release);
            let me = rhea::thread::current();
            let level = || effective_priority(me).map_or(0, |p| p.level() as u32);
            let end = now().saturating_add(Duration::from_secs(10));
            // Work (spin) until boosted to 10, then to 30: the steps are recorded as seen.
            let mut seen = level();
            while seen < 10 && now() < end {
                core::hint::spin_loop();
                seen = level();
            }
            // Main starts high only once this is recorded, so it is mid's priority.
            s[0].store(seen, Ordering::Release);
            rhea::trace::counter!("low's inherited level", i64::from(seen));
            while level() < 30 && now() < end {
                core::hint::spin_loop();
            }
            s[1].store(level(), Ordering::Relaxed);
            rhea::trace::counter!("low's inherited level", i64::from(level()));
            // Before the release: after it, low (on its own CPU) and the others race.
            o.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v * 10 + 3))
                .ok();
            drop(g);
            linger();
        })
        .map_err(|_| "spawn low")?;
    wait_for("low to hold A", || low_holds.load(Ordering::Acquire))?;
    let low_id = low.id();

    let o = order.clone();
    let mid = Builder::new()
        .name("mid")
        .priority(prio(10))
        .affinity(CpuSet::single(0))
        .spawn(move || {
            let gb = B.lock().expect("mid locks B");
            let ga = A.lock().expect("mid locks A");
            drop(ga);
            drop(gb);
            o.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v * 10 + 2))
                .ok();
            linger();
        })
        .map_err(|_| "spawn mid")?;
    let level_of = |id| effective_priority(id).map_or(0, |p| p.level() as u32);
    wait_for("low to inherit from mid", || {
        level_of(low_id) >= 10 && seen[0].load(Ordering::Acquire) != 0
    })?;

    let o = order.clone();
    let high = Builder::new()
        .name("high")
        .priority(prio(30))
        .affinity(CpuSet::single(0))
        .spawn(move || {
            rhea::trace::instant!("high wants B");
            let g = B.lock().expect("high locks B");
            drop(g);
            o.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v * 10 + 1))
                .ok();
            linger();
        })
        .map_err(|_| "spawn high")?;

    let ids = [low.id(), mid.id(), high.id()];
    // The accounts are read while the threads linger (an exited thread has none).
    wait_for("all three to finish", || {
        order.load(Ordering::Relaxed) >= 100
    })?;
    let times = rhea::thread::thread_times();
    READ.store(true, Ordering::Release);
    let acct = |id| times.iter().find(|t| t.id == id);
    high.join().map_err(|_| "join high")?;
    mid.join().map_err(|_| "join mid")?;
    low.join().map_err(|_| "join low")?;

    let (first, second) = (
        seen[0].load(Ordering::Relaxed),
        seen[1].load(Ordering::Relaxed),
    );
    rhea::println!("trace-pi: low inherited {first} from mid, then {second} from high through mid");
    let ord = order.load(Ordering::Relaxed);
    rhea::println!(
        "trace-pi: completion order {}",
        if ord == 312 {
            "low, high, mid"
        } else {
            "WRONG"
        }
    );
    let (Some(l), Some(m), Some(h)) = (acct(ids[0]), acct(ids[1]), acct(ids[2])) else {
        return Err("a thread's accounts are missing");
    };
    rhea::println!(
        "trace-pi: accounts: low {} switches in, {} wake-ups; mid blocked {} us on mutexes; \
         high blocked {} us on mutexes, worst wake-to-run {} us",
        l.switches_in,
        l.wakeups,
        m.blocked_ns.mutex / 1000,
        h.blocked_ns.mutex / 1000,
        h.max_wake_latency_ns / 1000
    );
    let accounts_ok = l.blocked_ns.mutex == 0
        && m.blocked_ns.mutex > 0
        && h.blocked_ns.mutex > 0
        && l.switches_in >= 1
        && m.wakeups >= 2
        && h.wakeups >= 2;
    if accounts_ok {
        rhea::println!(
            "trace-pi: accounts: low blocked 0 ns on mutexes, mid and high blocked on mutexes"
        );
    }
    if (first, second) != (10, 30) || ord != 312 || !accounts_ok {
        return Err("the inheritance chain did not happen as scripted");
    }
    control_at_run_time()?;
    rhea::println!("trace-pi: PASS");
    Ok(())
}
