//! A machine that lost a CPU at boot keeps working on the others: the online set is exactly
//! the CPUs that started, an affinity naming only the missing one is refused at the call, and
//! threads spread over the rest all finish.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};
use rhea::thread::{Builder, CpuSet};
use rhea::time::Duration;

rhea::main!(main);

static DONE: AtomicU64 = AtomicU64::new(0);
static RAN_ON: AtomicU64 = AtomicU64::new(0);

fn main() -> Result<(), &'static str> {
    let online = rhea::thread::online_cpus();
    if online.bits() != 0b11 {
        rhea::println!("smp-degraded: online set {:#b}", online.bits());
        return Err("the online set is not exactly CPUs 0 and 1");
    }
    if Builder::new()
        .name("on-cpu2")
        .affinity(CpuSet::single(2))
        .spawn(|| {})
        .is_ok()
    {
        return Err("a thread pinned to the CPU that never started was accepted");
    }
    rhea::println!("smp-degraded: online CPUs 0 and 1; pinning to cpu2 refused");
    let mut handles = [const { None }; 8];
    for (i, h) in handles.iter_mut().enumerate() {
        *h = Some(
            Builder::new()
                .name("worker")
                .affinity(CpuSet::single(i % 2))
                .spawn(|| {
                    for _ in 0..20 {
                        RAN_ON.fetch_or(1 << rhea::thread::current_cpu(), Ordering::Relaxed);
                        rhea::thread::sleep(Duration::from_micros(500));
                    }
                    DONE.fetch_add(1, Ordering::Relaxed);
                })
                .map_err(|_| "spawn")?,
        );
    }
    for h in handles.iter_mut().filter_map(Option::take) {
        h.join().map_err(|_| "join")?;
    }
    if DONE.load(Ordering::Relaxed) != 8 || RAN_ON.load(Ordering::Relaxed) != 0b11 {
        return Err("the workers did not all finish on both remaining CPUs");
    }
    rhea::println!("smp-degraded: PASS");
    Ok(())
}
