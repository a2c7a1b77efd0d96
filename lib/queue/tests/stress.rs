//! Real threads, millions of items: every item arrives exactly once and in its producer's
//! order (checked item by item and by checksum). Full and empty are handled the way a thread
//! (not an interrupt handler) would: spin briefly, then yield.
#![cfg(not(loom))]

use std::sync::Arc;
use std::thread;

use rhea_queue::{Full, mpmc, spsc};

/// Waits politely: the test machine's cores are shared.
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        thread::yield_now();
    }
}

#[test]
fn spsc_two_threads_millions() {
    const N: u64 = 2_000_000;
    let (mut tx, mut rx) = spsc::ring::<u64>(256);
    let producer = thread::spawn(move || {
        for i in 0..N {
            let mut item = i;
            let mut spins = 0;
            while let Err(Full(back)) = tx.push(item) {
                item = back;
                backoff(&mut spins);
            }
        }
    });
    let mut expected = 0u64;
    let mut sum = 0u64;
    let mut spins = 0;
    while expected < N {
        let n = rx.pop_batch(64, |v| {
            assert_eq!(v, expected, "out of order, lost or duplicated");
            expected += 1;
            sum = sum.wrapping_add(v);
        });
        if n == 0 {
            backoff(&mut spins);
        } else {
            spins = 0;
        }
    }
    producer.join().unwrap();
    assert_eq!(sum, N * (N - 1) / 2);
    assert_eq!(rx.pop(), None);
}

#[test]
fn mpmc_three_producers_one_consumer_millions() {
    const PRODUCERS: u64 = 3;
    const PER: u64 = 700_000;
    let q = Arc::new(mpmc::Queue::<u64>::new(256));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = q.clone();
            thread::spawn(move || {
                for i in 0..PER {
                    let mut item = (p << 32) | i;
                    let mut spins = 0;
                    while let Err(Full(back)) = q.push(item) {
                        item = back;
                        backoff(&mut spins);
                    }
                }
            })
        })
        .collect();
    let mut next = [0u64; PRODUCERS as usize];
    let mut sum = 0u64;
    let mut received = 0;
    let mut spins = 0;
    while received < PRODUCERS * PER {
        match q.pop() {
            Some(v) => {
                let (p, i) = ((v >> 32) as usize, v & 0xffff_ffff);
                assert_eq!(i, next[p], "producer {p}: out of order, lost or duplicated");
                next[p] += 1;
                sum = sum.wrapping_add(v);
                received += 1;
                spins = 0;
            }
            None => backoff(&mut spins),
        }
    }
    for p in producers {
        p.join().unwrap();
    }
    let want: u64 = (0..PRODUCERS)
        .map(|p| (p << 32) * PER + PER * (PER - 1) / 2)
        .sum();
    assert_eq!(sum, want);
    assert_eq!(q.pop(), None);
}

#[test]
fn mpmc_two_producers_two_consumers() {
    const PER: u64 = 500_000;
    let q = Arc::new(mpmc::Queue::<u64>::new(64));
    let producers: Vec<_> = (0..2u64)
        .map(|p| {
            let q = q.clone();
            thread::spawn(move || {
                for i in 0..PER {
                    let mut item = (p << 32) | i;
                    let mut spins = 0;
                    while let Err(Full(back)) = q.push(item) {
                        item = back;
                        backoff(&mut spins);
                    }
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let q = q.clone();
            thread::spawn(move || {
                // Each consumer sees each producer's items in increasing order.
                let mut last = [None::<u64>; 2];
                let mut got = Vec::new();
                let mut spins = 0;
                loop {
                    match q.pop() {
                        Some(u64::MAX) => break,
                        Some(v) => {
                            let (p, i) = ((v >> 32) as usize, v & 0xffff_ffff);
                            assert!(last[p].is_none_or(|l| l < i), "reordered");
                            last[p] = Some(i);
                            got.push(v);
                            spins = 0;
                        }
                        None => backoff(&mut spins),
                    }
                }
                got
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    for _ in 0..2 {
        while q.push(u64::MAX).is_err() {
            thread::yield_now();
        }
    }
    let mut all: Vec<u64> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    all.sort_unstable();
    let want: Vec<u64> = (0..2u64)
        .flat_map(|p| (0..PER).map(move |i| (p << 32) | i))
        .collect();
    assert_eq!(all, want, "lost or duplicated items");
}
