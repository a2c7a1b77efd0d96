//! Model checks of the fixed-block pool's lock-free stack (`rhea_mm::pool::RawPool`): every
//! interleaving (within the preemption bound) of small scenarios, with loom checking that no
//! block is ever owned twice, that a block's contents written by one owner happen-before the
//! next owner's access (loom's `UnsafeCell` reports the race otherwise), that nothing is lost,
//! and that the ABA pattern (a block taken, others moved, the block put back while a `take`
//! stalls) cannot corrupt the stack.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p rhea-mm --release` (`cargo xtask test`
//! does, into `target/loom`).
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use rhea_mm::pool::{PoolError, RawPool};

/// Three-thread models with CAS loops: bounded so each finishes in seconds
/// (`LOOM_MAX_PREEMPTIONS=N` overrides the bound for a deeper run).
fn bounded(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    builder.check(f);
}

/// A pool with, per block, an ownership flag and a cell standing for the block's bytes.
struct Checked {
    pool: RawPool,
    owned: Vec<AtomicBool>,
    contents: Vec<UnsafeCell<u32>>,
}

impl Checked {
    fn new(count: u32) -> Arc<Self> {
        Arc::new(Self {
            pool: RawPool::new(count, 8, 8).unwrap(),
            owned: (0..count).map(|_| AtomicBool::new(false)).collect(),
            contents: (0..count).map(|_| UnsafeCell::new(0)).collect(),
        })
    }

    /// Takes a block, asserts no one else owns it, and writes `tag` into it (after reading
    /// the previous owner's write: a missing happens-before edge is a loom race report).
    fn take(&self, tag: u32) -> Option<u32> {
        let i = self.pool.take()?;
        let was = self.owned[i as usize].swap(true, Ordering::Relaxed);
        assert!(!was, "block {i} handed to two owners");
        self.contents[i as usize].with_mut(|p| {
            // SAFETY: the pool gave block i to this thread alone (checked just above).
            unsafe {
                let _previous = *p;
                *p = tag;
            }
        });
        Some(i)
    }

    /// Gives block `i` back: even blocks through `put_owned` (the `Block` guard's path), odd
    /// ones through the checked `put`, so both paths meet every scenario.
    fn put(&self, i: u32) {
        self.owned[i as usize].store(false, Ordering::Relaxed);
        if i % 2 == 0 {
            // SAFETY: `take` gave block i to this thread, which gives it back once, here.
            unsafe { self.pool.put_owned(i) };
        } else {
            self.pool.put(i).expect("owned block");
        }
    }

    /// Drains the pool on one thread: every block exactly once.
    fn assert_all_free(&self, count: u32) {
        let mut got: Vec<u32> = (0..count).filter_map(|_| self.pool.take()).collect();
        assert_eq!(self.pool.take(), None, "more blocks than the pool has");
        got.sort_unstable();
        assert_eq!(got, (0..count).collect::<Vec<_>>(), "a block was lost");
    }
}

#[test]
fn two_threads_take_and_put_one_block() {
    // One block, two contenders: each either gets it or sees the pool empty.
    loom::model(|| {
        let c = Checked::new(1);
        let t = {
            let c = c.clone();
            thread::spawn(move || {
                if let Some(i) = c.take(1) {
                    c.put(i);
                }
            })
        };
        if let Some(i) = c.take(2) {
            c.put(i);
        }
        t.join().unwrap();
        c.assert_all_free(1);
    });
}

#[test]
fn concurrent_puts_and_takes_keep_every_block() {
    // Two blocks: one thread frees one it holds while another takes twice.
    loom::model(|| {
        let c = Checked::new(2);
        let held = c.take(1).unwrap();
        let putter = {
            let c = c.clone();
            thread::spawn(move || c.put(held))
        };
        let taker = {
            let c = c.clone();
            thread::spawn(move || {
                let a = c.take(2);
                let b = c.take(3);
                assert!(a.is_some(), "one block was free all along");
                for i in a.into_iter().chain(b) {
                    c.put(i);
                }
            })
        };
        putter.join().unwrap();
        taker.join().unwrap();
        c.assert_all_free(2);
    });
}

#[test]
fn aba_cannot_corrupt_the_stack() {
    // Stack A → B → C. One thread takes (it may load head = A, link B, and stall); the other
    // takes A and B, then puts A back: head is A again, but its link is C, not B. The stalled
    // take must not install B (still owned) as the first free block.
    bounded(3, || {
        let c = Checked::new(3);
        let t = {
            let c = c.clone();
            thread::spawn(move || {
                let i = c.take(1);
                if let Some(i) = i {
                    c.put(i);
                }
            })
        };
        let a = c.take(2);
        let b = c.take(3);
        if let Some(a) = a {
            c.put(a);
        }
        if let Some(b) = b {
            c.put(b);
        }
        t.join().unwrap();
        c.assert_all_free(3);
    });
}

#[test]
fn racing_double_frees_and_raw_claims_admit_exactly_one() {
    loom::model(|| {
        let pool = Arc::new(RawPool::new(2, 8, 8).unwrap());
        let i = pool.take().unwrap();
        let j = pool.take().unwrap();
        pool.mark_raw(j);
        let t = {
            let pool = pool.clone();
            thread::spawn(move || (pool.put(i), pool.claim_raw(j)))
        };
        let (put_here, claim_here) = (pool.put(i), pool.claim_raw(j));
        let (put_there, claim_there) = t.join().unwrap();
        let puts = [put_here, put_there];
        assert_eq!(puts.iter().filter(|r| r.is_ok()).count(), 1, "{puts:?}");
        assert!(puts.contains(&Err(PoolError::NotAllocated)));
        let claims = [claim_here, claim_there];
        assert_eq!(claims.iter().filter(|r| r.is_ok()).count(), 1, "{claims:?}");
        pool.put(j).unwrap();
        assert!(pool.take().is_some() && pool.take().is_some() && pool.take().is_none());
    });
}
