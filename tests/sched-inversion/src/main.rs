//! Test app: the classic priority inversion. Low (2) holds a mutex; high (30) blocks on it;
//! medium (10) becomes ready and spins. With priority inheritance, low runs at 30, releases
//! the mutex, high finishes, and only then does medium get the CPU.
//!
//! No step depends on how long another takes: low spins until it is boosted, medium until
//! high is done, each with a 2 s limit. A wall-clock version (low spinning 15 ms, expecting
//! high's 5 ms sleep to have ended by then) failed once on CI under load: QEMU's vCPU was
//! off the host CPU long enough that both times passed together. Without inheritance the
//! limits expire and the test fails as it should: low reports its own priority, medium
//! finishes first.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use rhea::sync::Mutex;
use rhea::thread::{Builder, Priority, effective_priority};
use rhea::time::{Duration, now};

rhea::main!(main);

/// How long a spin waits for what it waits for before giving up (far beyond any run).
const LIMIT: Duration = Duration::from_secs(2);

/// Spins until `done()` or [`LIMIT`] has passed.
fn spin_until(done: impl Fn() -> bool) {
    let end = now().saturating_add(LIMIT);
    while !done() && now() < end {
        core::hint::spin_loop();
    }
}

fn main() -> Result<(), &'static str> {
    static LOCK: Mutex<u32> = Mutex::new(0);
    let order = Arc::new(AtomicU32::new(0)); // digits appended: 1 = high done, 2 = medium done
    let inherited = Arc::new(AtomicU64::new(0));
    let prio = |n| Priority::new(n).unwrap();

    let (o, inh) = (order.clone(), inherited.clone());
    let low = Builder::new()
        .name("low")
        .priority(prio(2))
        .spawn(move || {
            let mut g = LOCK.lock().expect("low locks");
            let me = rhea::thread::current();
            // High blocks on the mutex after its 5 ms sleep: low is boosted then.
            spin_until(|| effective_priority(me).is_some_and(|p| p.level() == 30));
            inh.store(
                effective_priority(me).map_or(0, |p| p.level() as u64),
                Ordering::Relaxed,
            );
            *g += 1;
            drop(g);
            let _ = o;
        })
        .map_err(|_| "spawn low")?;
    // Make sure low holds the lock before the others start.
    rhea::thread::sleep(Duration::from_millis(2));

    let o = order.clone();
    let high = Builder::new()
        .name("high")
        .priority(prio(30))
        .spawn(move || {
            rhea::thread::sleep(Duration::from_millis(5));
            let mut g = LOCK.lock().expect("high locks");
            *g += 1;
            drop(g);
            o.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v * 10 + 1))
                .ok();
        })
        .map_err(|_| "spawn high")?;
    let o = order.clone();
    let medium = Builder::new()
        .name("medium")
        .priority(prio(10))
        .spawn(move || {
            rhea::thread::sleep(Duration::from_millis(6));
            // Busy at 10, above low's own 2: only inheritance lets high finish meanwhile.
            spin_until(|| o.load(Ordering::Relaxed) != 0);
            o.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v * 10 + 2))
                .ok();
        })
        .map_err(|_| "spawn medium")?;

    high.join().map_err(|_| "join")?;
    medium.join().map_err(|_| "join")?;
    low.join().map_err(|_| "join")?;
    let inh = inherited.load(Ordering::Relaxed);
    rhea::println!("inversion: low inherited priority {inh} while high waited");
    let ord = order.load(Ordering::Relaxed);
    rhea::println!(
        "inversion: completion order {}",
        if ord == 12 { "high, medium" } else { "WRONG" }
    );
    if inh != 30 || ord != 12 {
        return Err("priority inheritance did not bound the inversion");
    }
    if *LOCK.lock().map_err(|_| "final lock")? != 2 {
        return Err("mutex-protected count is wrong");
    }
    rhea::println!("inversion: PASS");
    Ok(())
}
