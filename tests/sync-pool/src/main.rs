//! Test app: `rhea::sync::BlockPool` — every block handed out once and aligned, a clear error
//! when empty, a timeout, a thread blocked in `alloc` woken by a free from another thread and
//! by a free in an interrupt handler, `try_alloc` and the raw hand-off from an interrupt
//! handler, and the checks of `from_raw` (reclaiming twice, foreign pointers, pointers inside
//! a block). Every block must be back at the end.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use rhea::sync::{BlockPool, IrqsOff, PoolError, SpinLock};
use rhea::thread::{Builder, Priority};
use rhea::time::{Duration, now};

rhea::main!(main);

const COUNT: u32 = 4;
const BYTES: usize = 100;
const MARK: u8 = 0x5a;

/// The pool the interrupt handler uses (set once before the interrupt is raised).
static POOL: SpinLock<Option<&'static BlockPool>, IrqsOff> = SpinLock::new(None);
/// The handler's result: a raw block pointer, or 0 after an `Empty`.
static FROM_IRQ: AtomicUsize = AtomicUsize::new(0);
static IRQ_DONE: AtomicBool = AtomicBool::new(false);
/// The index of the block the waiting thread got.
static WAITER_GOT: AtomicU32 = AtomicU32::new(u32::MAX);

fn on_irq(_: usize) {
    let pool = *POOL.lock();
    let got = pool.map(BlockPool::try_alloc);
    FROM_IRQ.store(
        match got {
            Some(Ok(mut block)) => {
                block[0] = MARK;
                block.into_raw().as_ptr() as usize
            }
            _ => 0,
        },
        Ordering::Relaxed,
    );
    IRQ_DONE.store(true, Ordering::Release);
}

/// A raw block for [`on_irq_free`] to give back.
static TO_FREE: AtomicUsize = AtomicUsize::new(0);

/// Gives back the raw block in `TO_FREE` (a free in interrupt context, waking a waiter).
fn on_irq_free(_: usize) {
    let pool = *POOL.lock();
    let ok = match (
        pool,
        NonNull::new(TO_FREE.load(Ordering::Relaxed) as *mut u8),
    ) {
        (Some(pool), Some(ptr)) => pool.from_raw(ptr).is_ok(), // dropped: freed here
        _ => false,
    };
    FROM_IRQ.store(usize::from(ok), Ordering::Relaxed);
    IRQ_DONE.store(true, Ordering::Release);
}

/// Raises the handler and waits (at most 1 s) for it to have run.
fn run_handler(vector: u8) -> Result<usize, &'static str> {
    IRQ_DONE.store(false, Ordering::Relaxed);
    rhea::irq::raise_self(vector);
    let give_up = now().saturating_add(Duration::from_secs(1));
    while !IRQ_DONE.load(Ordering::Acquire) {
        if now() > give_up {
            return Err("the interrupt never ran");
        }
        rhea::thread::yield_now();
    }
    Ok(FROM_IRQ.load(Ordering::Relaxed))
}

fn main() -> Result<(), &'static str> {
    let pool: &'static BlockPool = alloc::boxed::Box::leak(alloc::boxed::Box::new(
        BlockPool::with_align(COUNT, BYTES, 64).map_err(|_| "create")?,
    ));
    assert_eq!((pool.capacity(), pool.block_bytes()), (COUNT, BYTES));

    // Every block once, aligned, disjoint, writable end to end.
    let mut blocks: Vec<_> = (0..COUNT)
        .map(|_| pool.try_alloc())
        .collect::<Result<_, _>>()
        .map_err(|_| "a fresh pool ran dry")?;
    let mut starts: Vec<usize> = blocks.iter().map(|b| b.as_ptr() as usize).collect();
    starts.sort_unstable();
    for (i, b) in blocks.iter_mut().enumerate() {
        b.fill(i as u8);
    }
    let disjoint = starts.windows(2).all(|w| w[1] - w[0] >= BYTES);
    let aligned = starts.iter().all(|s| s % 64 == 0);
    let intact = blocks
        .iter()
        .enumerate()
        .all(|(i, b)| b.len() == BYTES && b.iter().all(|&x| x == i as u8));
    if !(disjoint && aligned && intact) {
        return Err("blocks overlap, are misaligned or lost their contents");
    }
    rhea::println!("pool: {COUNT} blocks of {BYTES} bytes, distinct and 64-aligned");

    let e = pool.try_alloc().unwrap_err();
    rhea::println!("pool: fifth try_alloc -> {e}");
    let start = now();
    let e = pool.alloc_timeout(Duration::from_millis(5)).unwrap_err();
    if e != PoolError::Timeout || now().saturating_duration_since(start) < Duration::from_millis(5)
    {
        return Err("alloc_timeout returned early");
    }
    rhea::println!("pool: alloc_timeout on an empty pool -> {e}");

    // A more important thread blocks in `alloc`; main frees a block; it must get it.
    let waiter = Builder::new()
        .name("pool-waiter")
        .priority(Priority::new(50).expect("valid"))
        .spawn(move || {
            let b = pool
                .alloc_timeout(Duration::from_secs(5))
                .expect("the freed block");
            WAITER_GOT.store(b.index(), Ordering::Relaxed);
        })
        .map_err(|_| "spawn")?;
    rhea::thread::sleep(Duration::from_millis(2)); // the waiter is blocked by now
    let freed = blocks.pop().expect("four blocks").index();
    waiter.join().map_err(|_| "join")?;
    if WAITER_GOT.load(Ordering::Relaxed) != freed {
        return Err("the waiter got another block");
    }
    rhea::println!("pool: a waiting thread got the block freed after it blocked");

    // From an interrupt handler: a block, handed out raw; then, with the pool empty, Empty.
    *POOL.lock() = Some(pool);
    let vector = rhea::irq::register_fast(on_irq, 0).map_err(|_| "register")?;
    // One block is free (the waiter's, back when it ended); the handler takes it.
    let raw = run_handler(vector)?;
    let raw = NonNull::new(raw as *mut u8).ok_or("the handler got no block")?;
    rhea::println!("pool: interrupt handler took a block and handed it out raw");
    if run_handler(vector)? != 0 {
        return Err("the handler got a block from an empty pool");
    }
    rhea::println!(
        "pool: interrupt handler on an empty pool -> {}",
        PoolError::Empty
    );

    // Raw hand-off checks.
    let back = pool.from_raw(raw).map_err(|_| "from_raw")?;
    if back[0] != MARK {
        return Err("the handler's write was lost");
    }
    let e = pool.from_raw(raw).unwrap_err();
    rhea::println!("pool: reclaimed twice -> {e}");
    let mut elsewhere = 0u8;
    let e = pool.from_raw(NonNull::from(&mut elsewhere)).unwrap_err();
    rhea::println!("pool: foreign pointer -> {e}");
    let inside = NonNull::new(raw.as_ptr().wrapping_add(1)).expect("non-null");
    let e = pool.from_raw(inside).unwrap_err();
    rhea::println!("pool: inside a block -> {e}");
    let e = BlockPool::with_align(COUNT, BYTES, 48).unwrap_err();
    rhea::println!("pool: bad layout -> {e}");

    // Every block out; a thread waits; an interrupt handler frees one: the thread gets it.
    let waiter = Builder::new()
        .name("pool-waiter-irq")
        .priority(Priority::new(50).expect("valid"))
        .spawn(move || {
            let b = pool
                .alloc_timeout(Duration::from_secs(5))
                .expect("the block freed by the handler");
            WAITER_GOT.store(b.index(), Ordering::Relaxed);
        })
        .map_err(|_| "spawn")?;
    rhea::thread::sleep(Duration::from_millis(2)); // the waiter is blocked by now
    let index = back.index();
    TO_FREE.store(back.into_raw().as_ptr() as usize, Ordering::Relaxed);
    let free_vector = rhea::irq::register_fast(on_irq_free, 0).map_err(|_| "register")?;
    if run_handler(free_vector)? != 1 {
        return Err("the handler could not give the block back");
    }
    waiter.join().map_err(|_| "join")?;
    if WAITER_GOT.load(Ordering::Relaxed) != index {
        return Err("the waiter did not get the block the handler freed");
    }
    rhea::println!("pool: a waiting thread got the block an interrupt handler freed");

    // Everything back: all four again.
    drop(blocks);
    let all: Vec<_> = (0..COUNT).filter_map(|_| pool.try_alloc().ok()).collect();
    if all.len() != COUNT as usize || pool.try_alloc().is_ok() {
        return Err("blocks lost or duplicated");
    }
    rhea::println!("pool: PASS");
    Ok(())
}
