//! Fixed-block memory pools (ThreadX block pools, Zephyr `k_mem_slab`).
//!
//! A [`BlockPool`] carves `count` blocks of `block_bytes` from the heap once, at creation;
//! after that, getting and returning a block is O(1) and never touches the heap, so it works
//! in interrupt handlers and on real-time paths where allocation is not allowed.
//!
//! Lock and interrupt safety: there is no lock. The free blocks are a lock-free stack of
//! indices (`rhea_mm::pool::RawPool`: tagged head against ABA, model-checked with loom); a
//! handler that interrupts a thread in the middle of `try_alloc` or a free on the same pool
//! completes its own operation, and the thread's retries once. Nothing masks interrupts.
//!
//! Blocking: [`BlockPool::alloc`] and [`BlockPool::alloc_timeout`] sleep on a semaphore that a
//! free gives only when a thread is waiting. The no-lost-wake-up argument: a waiter increments
//! `waiters` (SeqCst) and then tries the stack once more (SeqCst load of its head) before it
//! sleeps; a free pushes (SeqCst CAS of the head) and then reads `waiters` (SeqCst). In the one
//! order of SeqCst operations, either the waiter's last try sees the block or the free sees
//! the waiter and gives. A unit given for a block someone else took first only makes a waiter
//! look again (and sleep again); the semaphore has no useful maximum, so it is `u32::MAX`.
//! Waiters are woken most important first (the semaphore's order), but a thread that calls
//! `try_alloc` at the right moment can take the block first: the pool is not FIFO-fair.
#![allow(
    unsafe_code,
    reason = "a block guard hands out its bytes as a slice; each use has a SAFETY note"
)]

use super::Semaphore;
use crate::time::{Duration, Instant, now};
use alloc::sync::Arc;
use core::fmt;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};
use rhea_mm::pool::RawPool;
use rhea_sched::SchedError;

/// Why a pool call failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PoolError {
    /// `try_alloc`: every block is out.
    Empty,
    /// `alloc_timeout`: every block stayed out until the timeout.
    Timeout,
    /// `new`: zero blocks, zero-byte blocks, more than [`BlockPool::MAX_BLOCKS`] blocks, an alignment
    /// that is not a power of two up to [`BlockPool::MAX_ALIGN`], or a size that overflows.
    BadLayout,
    /// `new`: the heap could not supply the blocks.
    NoMemory,
    /// `from_raw`: the pointer is not the start of one of this pool's blocks.
    NotFromPool,
    /// `from_raw`: the block is not out as a raw pointer (already reclaimed, or free).
    NotAllocated,
    /// Blocking: the scheduler refused the wait (e.g. called from an interrupt handler).
    Sched(SchedError),
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("every block of the pool is in use"),
            Self::Timeout => f.write_str("timed out waiting for a free block"),
            Self::BadLayout => f.write_str("bad pool layout (count, block size or alignment)"),
            Self::NoMemory => f.write_str("no memory for the pool's blocks"),
            Self::NotFromPool => f.write_str("pointer is not a block of this pool"),
            Self::NotAllocated => f.write_str("block is not out as a raw pointer"),
            Self::Sched(e) => write!(f, "{e}"),
        }
    }
}

impl From<rhea_mm::pool::PoolError> for PoolError {
    fn from(e: rhea_mm::pool::PoolError) -> Self {
        use rhea_mm::pool::PoolError as E;
        match e {
            E::BadLayout => Self::BadLayout,
            E::NoMemory => Self::NoMemory,
            E::NotFromPool => Self::NotFromPool,
            E::NotAllocated => Self::NotAllocated,
        }
    }
}

/// `count` blocks of `block_bytes`, allocated and freed in O(1) (see the module doc).
///
/// ```ignore
/// static POOL: rhea_sync::Once<BlockPool> = rhea_sync::Once::new();
/// let pool = POOL.call_once(|| BlockPool::new(32, 256).expect("pool"));
/// let mut block = pool.try_alloc()?; // interrupt-safe
/// block[..4].copy_from_slice(b"data");
/// drop(block); // back to the pool
/// ```
pub struct BlockPool {
    raw: RawPool,
    /// Blocks out now and at most, for [`crate::pools`] (relaxed: a report, not a guard).
    counts: Arc<Counts>,
    /// Threads inside `alloc`/`alloc_timeout` that may sleep (SeqCst, see the module doc).
    waiters: AtomicU32,
    /// A unit per free while someone waits.
    freed: Semaphore,
}

impl fmt::Debug for BlockPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockPool")
            .field("count", &self.raw.count())
            .field("block_bytes", &self.raw.block_bytes())
            .finish()
    }
}

impl BlockPool {
    /// The block alignment of [`BlockPool::new`]: enough for any scalar type.
    pub const DEFAULT_ALIGN: usize = 16;
    /// The most blocks a pool may have.
    pub const MAX_BLOCKS: u32 = rhea_mm::pool::MAX_BLOCKS;
    /// The largest block alignment.
    pub const MAX_ALIGN: usize = rhea_mm::pool::MAX_ALIGN;

    /// A pool of `count` blocks of `block_bytes`, each aligned to 16 bytes, zeroed.
    pub fn new(count: u32, block_bytes: usize) -> Result<Self, PoolError> {
        Self::with_align(count, block_bytes, Self::DEFAULT_ALIGN)
    }

    /// A pool of `count` blocks of `block_bytes`, each aligned to `align` (a power of two up
    /// to [`BlockPool::MAX_ALIGN`], e.g. a cache line or a page for device buffers), zeroed.
    pub fn with_align(count: u32, block_bytes: usize, align: usize) -> Result<Self, PoolError> {
        let pool = Self {
            counts: Arc::new(Counts {
                name: rhea_sync::Once::new(),
                blocks: count as usize,
                block_bytes,
                in_use: AtomicU32::new(0),
                peak: AtomicU32::new(0),
            }),
            raw: RawPool::new(count, block_bytes, align)?,
            waiters: AtomicU32::new(0),
            freed: Semaphore::new(0, u32::MAX),
        };
        // Registers the semaphore with the scheduler now, in thread context: registration may
        // allocate, and the first `give` may otherwise come from a free in an interrupt
        // handler.
        let _ = pool.freed.count();
        Ok(pool)
    }

    /// Names the pool and lists it in [`crate::pools::pools`] (`rhea-shell`'s `mem`) for as
    /// long as it lives. `false` when the list is full, or the pool was registered already
    /// (its first name stays).
    pub fn register(&self, name: &'static str) -> bool {
        let mut first = false;
        self.counts.name.call_once(|| {
            first = true;
            name
        });
        if !first {
            return false;
        }
        let usage: Arc<dyn crate::pools::PoolUsage> = self.counts.clone();
        crate::pools::register(&usage)
    }

    fn taken(&self, index: u32) -> Block<'_> {
        let now = self.counts.in_use.fetch_add(1, Ordering::Relaxed) + 1;
        // A read first: the peak rarely moves, and a read-modify-write on every allocation
        // would bounce the line between CPUs.
        if now > self.counts.peak.load(Ordering::Relaxed) {
            self.counts.peak.fetch_max(now, Ordering::Relaxed);
        }
        self.block(index)
    }

    /// How many blocks the pool has.
    pub fn capacity(&self) -> u32 {
        self.raw.count()
    }

    /// The size of each block in bytes.
    pub fn block_bytes(&self) -> usize {
        self.raw.block_bytes()
    }

    fn block(&self, index: u32) -> Block<'_> {
        Block {
            pool: self,
            index,
            ptr: self.raw.block_ptr(index),
        }
    }

    /// A free block, or [`PoolError::Empty`]. O(1), lock-free; works in interrupt handlers.
    pub fn try_alloc(&self) -> Result<Block<'_>, PoolError> {
        self.raw
            .take()
            .map(|i| self.taken(i))
            .ok_or(PoolError::Empty)
    }

    /// A free block, waiting as long as it takes (thread context only).
    pub fn alloc(&self) -> Result<Block<'_>, PoolError> {
        self.alloc_until(None)
    }

    /// A free block, waiting at most `timeout` (thread context only).
    pub fn alloc_timeout(&self, timeout: Duration) -> Result<Block<'_>, PoolError> {
        self.alloc_until(Some(now().saturating_add(timeout)))
    }

    fn alloc_until(&self, deadline: Option<Instant>) -> Result<Block<'_>, PoolError> {
        loop {
            if let Some(i) = self.raw.take() {
                return Ok(self.taken(i));
            }
            self.waiters.fetch_add(1, Ordering::SeqCst);
            // The last look after registering (see the module doc).
            if let Some(i) = self.raw.take() {
                self.waiters.fetch_sub(1, Ordering::SeqCst);
                return Ok(self.taken(i));
            }
            let waited = match deadline {
                None => self.freed.take(),
                Some(d) => {
                    let left = d.saturating_duration_since(now());
                    if left.is_zero() {
                        Err(super::SyncError::Timeout)
                    } else {
                        self.freed.take_timeout(left)
                    }
                }
            };
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            match waited {
                Ok(()) => {}
                // One more look: a block freed at the deadline is better than an error.
                Err(super::SyncError::Timeout) => {
                    return self.try_alloc().map_err(|_| PoolError::Timeout);
                }
                Err(super::SyncError::Sched(e)) => return Err(PoolError::Sched(e)),
                Err(_) => return Err(PoolError::Timeout),
            }
        }
    }

    /// Takes back a block handed out by [`Block::into_raw`]. Checked: a pointer that is not
    /// the start of one of this pool's blocks is [`PoolError::NotFromPool`]; a block that is
    /// not out as a raw pointer (reclaimed already, or free) is [`PoolError::NotAllocated`].
    /// O(1), lock-free; works in interrupt handlers.
    pub fn from_raw(&self, ptr: NonNull<u8>) -> Result<Block<'_>, PoolError> {
        let index = self.raw.index_of(ptr)?;
        self.raw.claim_raw(index)?;
        Ok(self.block(index))
    }

    fn free(&self, index: u32) {
        // SAFETY: called only from `Block::drop`: a `Block` is the one owner of its index
        // (made by `take` or `claim_raw`, given back here once).
        unsafe { self.raw.put_owned(index) };
        self.counts.in_use.fetch_sub(1, Ordering::Relaxed);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            // At u32::MAX units every waiter has plenty to wake on: the error says nothing.
            let _ = self.freed.give();
        }
    }
}

/// A pool's figures, shared with the pool registry (which holds it weakly).
struct Counts {
    /// The name `register` gave.
    name: rhea_sync::Once<&'static str>,
    blocks: usize,
    block_bytes: usize,
    in_use: AtomicU32,
    peak: AtomicU32,
}

impl crate::pools::PoolUsage for Counts {
    fn usage(&self) -> crate::pools::PoolInfo {
        crate::pools::PoolInfo {
            name: self.name.get().copied().unwrap_or("(unnamed)"),
            blocks: self.blocks,
            block_bytes: self.block_bytes,
            in_use: self.in_use.load(Ordering::Relaxed) as usize,
            peak: self.peak.load(Ordering::Relaxed) as usize,
        }
    }
}

/// One block of a [`BlockPool`], `block_bytes` long; back to the pool when dropped.
pub struct Block<'a> {
    pool: &'a BlockPool,
    index: u32,
    ptr: NonNull<u8>,
}

// SAFETY: a `Block` is the only handle to its bytes (the pool hands an index to one owner
// until it is put back), so moving it to another thread moves sole ownership; the pool
// itself is `Sync`.
unsafe impl Send for Block<'_> {}
// SAFETY: `&Block` gives only `&[u8]`.
unsafe impl Sync for Block<'_> {}

impl fmt::Debug for Block<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Block")
            .field("index", &self.index)
            .field("ptr", &self.ptr)
            .finish()
    }
}

impl Block<'_> {
    /// The block's number within its pool (0 to capacity − 1).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Hands the block out as a raw pointer to its first byte (for a C-style hand-off); it
    /// stays allocated until [`BlockPool::from_raw`] takes it back.
    pub fn into_raw(self) -> NonNull<u8> {
        let this = core::mem::ManuallyDrop::new(self);
        this.pool.raw.mark_raw(this.index);
        this.ptr
    }
}

impl Deref for Block<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the block's `block_bytes` bytes are inside the pool's allocation, were
        // zeroed at creation (so initialised), and belong to this `Block` alone.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.pool.block_bytes()) }
    }
}

impl DerefMut for Block<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.pool.block_bytes()) }
    }
}

impl Drop for Block<'_> {
    fn drop(&mut self) {
        self.pool.free(self.index);
    }
}
