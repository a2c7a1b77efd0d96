//! Model checks: every interleaving (within the stated preemption bound) of small scenarios,
//! with loom checking each slot access for data races and each item for loss or duplication.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p rhea-queue --release` (`cargo xtask test`
//! does, into `target/loom`). Capacities are 2 so that full, empty and the slot wrap all
//! happen within three or four operations; `offset` variants first push and pop that many
//! items on one thread so the concurrent part starts mid-ring and crosses the end of the slot
//! array.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use rhea_queue::{Dropped, mpmc, spsc};

/// Models with three threads and CAS loops: bounded so each finishes in seconds
/// (`LOOM_MAX_PREEMPTIONS=N` overrides the bound for a deeper run). Two-thread SPSC models run
/// unbounded.
fn bounded(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    builder.check(f);
}

/// Asserts that `popped` (in pop order, from one consumer) followed by `rest` is exactly
/// `accepted` in order.
fn assert_fifo(accepted: &[u32], popped: &[u32], rest: &[u32]) {
    let all: Vec<u32> = popped.iter().chain(rest).copied().collect();
    assert_eq!(all, accepted, "lost, duplicated or reordered items");
}

fn spsc_push_pop(offset: usize) {
    loom::model(move || {
        let (mut tx, mut rx) = spsc::ring::<u32>(2);
        for i in 0..offset {
            tx.push(100 + i as u32).unwrap();
            assert_eq!(rx.pop(), Some(100 + i as u32));
        }
        let producer = thread::spawn(move || {
            let dropped = Dropped::new();
            let mut accepted = Vec::new();
            for i in 0..3 {
                if dropped.count_full(tx.push(i)) {
                    accepted.push(i);
                }
            }
            assert_eq!(accepted.len() as u64 + dropped.get(), 3);
            (tx, accepted)
        });
        let mut popped = Vec::new();
        for _ in 0..2 {
            popped.extend(rx.pop());
        }
        let (_tx, accepted) = producer.join().unwrap();
        // With at most 2 pops during 3 pushes into 2 slots, at least 2 pushes succeed.
        assert!(accepted.len() >= 2);
        let mut rest = Vec::new();
        while let Some(v) = rx.pop() {
            rest.push(v);
        }
        assert!(rx.is_empty());
        assert_fifo(&accepted, &popped, &rest);
    });
}

#[test]
fn spsc_fifo_full_and_empty() {
    spsc_push_pop(0);
}

#[test]
fn spsc_wraps_around() {
    spsc_push_pop(1);
}

#[test]
fn spsc_batches() {
    loom::model(|| {
        let (mut tx, mut rx) = spsc::ring::<u32>(2);
        tx.push(0).unwrap();
        assert_eq!(rx.pop(), Some(0)); // start mid-ring
        let producer = thread::spawn(move || {
            let mut items = 1..4;
            let first = tx.push_iter(&mut items);
            let second = tx.push_iter(&mut items);
            (tx, first + second, items.next())
        });
        let mut popped = Vec::new();
        rx.pop_batch(2, |v| popped.push(v));
        let (_tx, pushed, not_pushed) = producer.join().unwrap();
        assert!(pushed >= 2);
        assert_eq!(not_pushed, if pushed == 3 { None } else { Some(3) });
        let mut rest = Vec::new();
        rx.pop_batch(usize::MAX, |v| rest.push(v));
        let accepted: Vec<u32> = (1..1 + pushed as u32).collect();
        assert_fifo(&accepted, &popped, &rest);
    });
}

/// Counts its drops, to prove each item is dropped exactly once wherever it ends.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn spsc_drops_every_item_once() {
    loom::model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (mut tx, mut rx) = spsc::ring::<Counted>(2);
        let d = drops.clone();
        let producer = thread::spawn(move || {
            for _ in 0..3 {
                // Full: the item comes back and is dropped here.
                let _ = tx.push(Counted(d.clone()));
            }
            // The ring may be freed here or in the consumer thread, whichever is last.
        });
        let consumer = thread::spawn(move || drop(rx.pop()));
        producer.join().unwrap();
        consumer.join().unwrap();
        assert_eq!(drops.load(Ordering::Relaxed), 3);
    });
}

fn mpmc_two_producers(offset: usize) {
    bounded(4, move || {
        let q = Arc::new(mpmc::Queue::<u32>::new(2));
        for i in 0..offset {
            q.push(100 + i as u32).unwrap();
            assert_eq!(q.pop(), Some(100 + i as u32));
        }
        // Producer A pushes 10, 11; producer B pushes 20.
        let spawn = |items: Vec<u32>| {
            let q = q.clone();
            thread::spawn(move || {
                let mut accepted = Vec::new();
                for v in items {
                    if q.push(v).is_ok() {
                        accepted.push(v);
                    }
                }
                accepted
            })
        };
        let a = spawn(vec![10, 11]);
        let b = spawn(vec![20]);
        let mut popped = Vec::new();
        popped.extend(q.pop());
        let accepted_a = a.join().unwrap();
        let accepted_b = b.join().unwrap();
        assert!(accepted_a.len() + accepted_b.len() >= 2);
        while let Some(v) = q.pop() {
            popped.push(v);
        }
        assert!(q.is_empty());
        // Every accepted item exactly once, and each producer's items in its order.
        for accepted in [&accepted_a, &accepted_b] {
            let mine: Vec<u32> = popped
                .iter()
                .copied()
                .filter(|v| v / 10 == accepted.first().map_or(0, |f| f / 10))
                .collect();
            assert_eq!(&mine, accepted);
        }
        assert_eq!(popped.len(), accepted_a.len() + accepted_b.len());
    });
}

#[test]
fn mpmc_two_producers_fifo_full() {
    mpmc_two_producers(0);
}

#[test]
fn mpmc_two_producers_wrap_around() {
    mpmc_two_producers(1);
}

#[test]
fn mpmc_two_consumers() {
    bounded(4, || {
        let q = Arc::new(mpmc::Queue::<u32>::new(2));
        q.push(100).unwrap();
        assert_eq!(q.pop(), Some(100)); // start mid-ring
        let spawn = || {
            let q = q.clone();
            thread::spawn(move || {
                let mut popped = Vec::new();
                for _ in 0..2 {
                    popped.extend(q.pop());
                }
                popped
            })
        };
        let c1 = spawn();
        let c2 = spawn();
        let mut accepted = Vec::new();
        for v in 0..3 {
            if q.push(v).is_ok() {
                accepted.push(v);
            }
        }
        let p1 = c1.join().unwrap();
        let p2 = c2.join().unwrap();
        // Each consumer sees items in push order.
        assert!(p1.is_sorted() && p2.is_sorted());
        let mut all: Vec<u32> = p1.into_iter().chain(p2).collect();
        while let Some(v) = q.pop() {
            all.push(v);
        }
        all.sort_unstable();
        assert_eq!(all, accepted, "lost or duplicated items");
    });
}

#[test]
fn mpmc_drops_every_item_once() {
    bounded(4, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let q = Arc::new(mpmc::Queue::<Counted>::new(2));
        let spawn = |pop: bool| {
            let q = q.clone();
            let d = drops.clone();
            thread::spawn(move || {
                let _ = q.push(Counted(d.clone()));
                if pop {
                    drop(q.pop());
                }
                let _ = q.push(Counted(d));
            })
        };
        let a = spawn(true);
        let b = spawn(false);
        drop(q);
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(drops.load(Ordering::Relaxed), 4);
    });
}
