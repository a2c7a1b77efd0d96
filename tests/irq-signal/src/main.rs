//! Test app: interrupt handlers signal threads. A fast handler on a self-IPI gives a
//! semaphore, try-sends on a message queue and sets event flags; three threads blocked on
//! those wake. A threaded handler's top half asks for its bottom half, which must run in its
//! own thread at the priority it was given.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use rhea::sync::{EventFlags, MessageQueue, Semaphore, WaitMode};
use rhea::thread::{Builder, Priority};
use rhea::time::Duration;

rhea::main!(main);

const ROUNDS: u64 = 500;

static SEM: Semaphore = Semaphore::new(0, 1000);
/// A `static` queue (inline storage, nothing allocated) that the interrupt handler sends on.
static QUEUE: MessageQueue<u64, 1000> = MessageQueue::new();
static EVENTS: EventFlags = EventFlags::new();
static RAISED: AtomicU64 = AtomicU64::new(0);
static QUEUE_FULL: AtomicU64 = AtomicU64::new(0);

fn on_interrupt(_: usize) {
    let n = RAISED.fetch_add(1, Ordering::Relaxed);
    let _ = SEM.give();
    if QUEUE.try_send(n).is_err() {
        QUEUE_FULL.fetch_add(1, Ordering::Relaxed);
    }
    EVENTS.set(1);
}

static BOTTOM_PRIORITY: AtomicU32 = AtomicU32::new(0);
static BOTTOM_RUNS: AtomicU32 = AtomicU32::new(0);

fn top_half(_: usize) -> rhea::irq::TopHalf {
    rhea::irq::TopHalf::WakeThread
}

fn bottom_half(_: usize) {
    let me = rhea::thread::current();
    let p = rhea::thread::effective_priority(me).map_or(0, |p| p.level() as u32);
    BOTTOM_PRIORITY.store(p, Ordering::Relaxed);
    BOTTOM_RUNS.fetch_add(1, Ordering::Relaxed);
}

fn main() -> Result<(), &'static str> {
    let vector = rhea::irq::register_fast(on_interrupt, 0).map_err(|_| "register")?;
    let sem_waker = Builder::new()
        .name("sem-waiter")
        .priority(Priority::new(30).unwrap())
        .spawn(|| {
            for _ in 0..ROUNDS {
                SEM.take_timeout(Duration::from_secs(5))
                    .expect("the interrupt gives the semaphore");
            }
        })
        .map_err(|_| "spawn")?;
    let q_reader = Builder::new()
        .name("queue-reader")
        .priority(Priority::new(29).unwrap())
        .spawn(|| {
            let q = &QUEUE;
            for i in 0..ROUNDS {
                let n = q
                    .recv_timeout(Duration::from_secs(5))
                    .expect("the interrupt sends");
                assert_eq!(n, i, "messages arrive in order");
            }
        })
        .map_err(|_| "spawn")?;
    static EVENT_WAKES: AtomicU64 = AtomicU64::new(0);
    let ev = Builder::new()
        .name("event-waiter")
        .priority(Priority::new(31).unwrap())
        .spawn(|| {
            for _ in 0..ROUNDS {
                EVENTS
                    .wait(1, WaitMode::Any, true, Some(Duration::from_secs(5)))
                    .expect("the interrupt sets the flag");
                EVENT_WAKES.fetch_add(1, Ordering::Relaxed);
            }
        })
        .map_err(|_| "spawn")?;
    for _ in 0..ROUNDS {
        rhea::irq::raise_self(vector);
        // The waiters are more important: each raise is consumed before the next.
    }
    sem_waker.join().map_err(|_| "join")?;
    q_reader.join().map_err(|_| "join")?;
    ev.join().map_err(|_| "join")?;
    let raised = RAISED.load(Ordering::Relaxed);
    let handled = rhea::irq::count(vector);
    rhea::println!(
        "irq: {raised} interrupts, {ROUNDS} semaphore wakes, {ROUNDS} messages, {} event wakes (handled {handled}, queue full {})",
        EVENT_WAKES.load(Ordering::Relaxed),
        QUEUE_FULL.load(Ordering::Relaxed)
    );
    if raised != ROUNDS || handled != ROUNDS {
        return Err("interrupts lost");
    }

    let prio = Priority::new(45).unwrap();
    let tv = rhea::irq::register_threaded("bottom-half", prio, top_half, bottom_half, 0)
        .map_err(|_| "register threaded")?;
    rhea::irq::raise_self(tv);
    rhea::thread::sleep(Duration::from_millis(5));
    let (runs, p) = (
        BOTTOM_RUNS.load(Ordering::Relaxed),
        BOTTOM_PRIORITY.load(Ordering::Relaxed),
    );
    rhea::println!("irq: threaded handler woke its thread at priority {p} ({runs} runs)");
    if runs != 1 || p != 45 {
        return Err("the bottom half did not run once at its priority");
    }
    rhea::println!("irq: PASS");
    Ok(())
}
