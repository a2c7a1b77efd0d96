//! Test app: the classic priority inversion. Low (2) holds a mutex; high (30) blocks on it;
//! medium (10) becomes ready and spins. With priority inheritance, low runs at 30, releases
//! the mutex, high finishes, and only then does medium get the CPU.
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

fn spin_for(d: Duration) {
    let end = now().saturating_add(d);
    while now() < end {
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
            // Let high and medium start: they sleep 5 ms first.
            spin_for(Duration::from_millis(15));
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
            spin_for(Duration::from_millis(30));
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
