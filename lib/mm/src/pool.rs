//! The non-blocking core of a fixed-block memory pool (`rhea::sync::BlockPool` adds waiting):
//! `count` blocks of `block_bytes`, carved once from one allocation, handed out and taken
//! back in O(1) by a lock-free stack of block indices. No lock and no interrupt masking, so it
//! is safe in interrupt handlers on any CPU: a handler that interrupts a thread in the middle
//! of an operation on the same pool can never wait for it.
//!
//! # The free stack
//! `head` packs the index of the first free block (24 bits, `NONE` when empty) with a tag
//! (40 bits) that every successful change of `head` increments. `link[i]` is block `i`'s
//! state: the index of the next free block while `i` is free, `IN_USE` while a `take`r owns
//! it, `RAW` while it is out as a raw pointer ([`RawPool::mark_raw`]). The links are a
//! separate array of atomics, not words inside the free blocks: a `take` that loses its race
//! reads the link of a block someone else already owns, and reading the block's own bytes
//! there would race with the new owner's writes.
//!
//! - `take`: load `head` (Acquire: the link was written before the `put` that published this
//!   head), read `link[first]`, CAS `head` from the loaded value to `(tag + 1, link)`.
//! - `put_owned(i)` (the caller is known to own `i`, as a `Block` guard is): write `link[i]`,
//!   then CAS `head` as below;
//! - `put(i)`: CAS `link[i]` from `IN_USE` to the current first index — the ownership check:
//!   a second `put` of the same block, or a `put` of a free one, fails here with
//!   [`PoolError::NotAllocated`] and changes nothing — then CAS `head` to `(tag + 1, i)`
//!   (Release: publishes the link and the block's contents to the next `take`), refreshing the
//!   link and retrying when `head` moved.
//!
//! **ABA**: a `take` that loaded `(tag, first)` and stalled while `first` was taken, others
//! came and went and `first` was put back would, without the tag, install a stale link. With
//! it, the CAS succeeds only if `head` changed exactly a multiple of 2^40 times meanwhile
//! (10^12 operations: hours of nothing but this pool at full speed) — accepted, as in every
//! tagged-pointer stack.
//!
//! RT: neither operation waits for another CPU or thread; a CAS fails only because another
//! operation on this pool succeeded in between, so an operation retries at most once per
//! operation that overtook it (lock-free, not wait-free).
//!
//! `head` is accessed `SeqCst` on the paths a blocking wrapper relies on: `BlockPool` counts
//! its waiters in a `SeqCst` atomic, a waiter increments it before its last `try_take`, and a
//! `put`ter reads it after its `head` CAS; in the single order of `SeqCst` operations either
//! the waiter's `take` sees the block or the `put`ter sees the waiter (no lost wake-up). On
//! x86 these are the same instructions as Acquire/Release; on Arm, `ldar`/`stlr`.
#![allow(
    unsafe_code,
    reason = "the pool owns raw memory; each use has a SAFETY note"
)]

use crate::sync::{AtomicU32, AtomicU64, Ordering};
use alloc::vec::Vec;
use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;

/// `link` of the end of the free list, and the first index of an empty one.
const NONE: u32 = (1 << INDEX_BITS) - 1;
/// `link` of a block a `take`r owns.
const IN_USE: u32 = u32::MAX - 1;
/// `link` of a block handed out as a raw pointer.
const RAW: u32 = u32::MAX - 2;
const INDEX_BITS: u32 = 24;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
/// The most blocks a pool may have (`NONE` is not an index).
pub const MAX_BLOCKS: u32 = NONE;
/// The largest block alignment a pool accepts.
pub const MAX_ALIGN: usize = 4096;

/// Why a pool operation failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PoolError {
    /// Zero blocks, zero-byte blocks, more than [`MAX_BLOCKS`], an alignment that is not a
    /// power of two up to [`MAX_ALIGN`], or a total size that overflows.
    BadLayout,
    /// The heap could not supply the pool's storage.
    NoMemory,
    /// The pointer is not the start of one of this pool's blocks.
    NotFromPool,
    /// The block is not in the state the call needs: freed twice, or (for
    /// [`RawPool::claim_raw`]) not handed out as a raw pointer.
    NotAllocated,
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadLayout => "bad pool layout (count, block size or alignment)",
            Self::NoMemory => "no memory for the pool's blocks",
            Self::NotFromPool => "pointer is not a block of this pool",
            Self::NotAllocated => "block is not allocated (double free?)",
        })
    }
}

fn pack(tag: u64, index: u32) -> u64 {
    (tag << INDEX_BITS) | u64::from(index)
}

fn unpack(head: u64) -> (u64, u32) {
    (head >> INDEX_BITS, (head & INDEX_MASK) as u32)
}

/// `count` blocks of `block_bytes` and their lock-free free stack (see the module doc).
pub struct RawPool {
    head: AtomicU64,
    link: Vec<AtomicU32>,
    /// The blocks: `count × stride` bytes, zeroed at creation (so every byte is initialised).
    memory: NonNull<u8>,
    layout: Layout,
    stride: usize,
    block_bytes: usize,
}

// SAFETY: the pool owns its memory; the blocks' bytes are reached only through indices that
// `take` hands to one owner at a time, and the stack itself is atomics.
unsafe impl Send for RawPool {}
// SAFETY: as above: every shared access is through the atomics.
unsafe impl Sync for RawPool {}

impl fmt::Debug for RawPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawPool")
            .field("count", &self.count())
            .field("block_bytes", &self.block_bytes)
            .field("stride", &self.stride)
            .finish()
    }
}

impl RawPool {
    /// `count` blocks of `block_bytes`, each aligned to `align`, all free. Allocates the
    /// blocks (zeroed) and the link array from the heap, once; fails rather than panics.
    pub fn new(count: u32, block_bytes: usize, align: usize) -> Result<Self, PoolError> {
        if count == 0
            || count > MAX_BLOCKS
            || block_bytes == 0
            || !align.is_power_of_two()
            || align > MAX_ALIGN
        {
            return Err(PoolError::BadLayout);
        }
        let stride = block_bytes
            .checked_next_multiple_of(align)
            .ok_or(PoolError::BadLayout)?;
        let total = stride
            .checked_mul(count as usize)
            .ok_or(PoolError::BadLayout)?;
        let layout = Layout::from_size_align(total, align).map_err(|_| PoolError::BadLayout)?;
        let mut link = Vec::new();
        link.try_reserve_exact(count as usize)
            .map_err(|_| PoolError::NoMemory)?;
        // Every block free, in address order: block i links to i + 1, the last to NONE.
        link.extend((1..count).chain([NONE]).map(AtomicU32::new));
        // SAFETY: `layout` has a non-zero size (count ≥ 1, stride ≥ block_bytes ≥ 1).
        let memory = NonNull::new(unsafe { alloc::alloc::alloc_zeroed(layout) })
            .ok_or(PoolError::NoMemory)?;
        Ok(Self {
            head: AtomicU64::new(pack(0, 0)),
            link,
            memory,
            layout,
            stride,
            block_bytes,
        })
    }

    /// How many blocks the pool has.
    pub fn count(&self) -> u32 {
        self.link.len() as u32
    }

    /// The usable bytes of each block.
    pub fn block_bytes(&self) -> usize {
        self.block_bytes
    }

    /// Takes a free block: its index, now owned by the caller (`IN_USE`), or `None` when
    /// every block is out. O(1), lock-free, interrupt-safe.
    pub fn take(&self) -> Option<u32> {
        let mut head = self.head.load(Ordering::SeqCst);
        loop {
            let (tag, first) = unpack(head);
            if first == NONE {
                return None;
            }
            // May be stale (another `take` won `first` already, and it may even be back):
            // then `head` has moved on, its tag with it, and the CAS below fails.
            let next = self.link[first as usize].load(Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                head,
                pack(tag.wrapping_add(1), next & INDEX_MASK as u32),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => {
                    // Ours alone now; only the owner writes the link of an owned block.
                    self.link[first as usize].store(IN_USE, Ordering::Relaxed);
                    return Some(first);
                }
                Err(now) => head = now,
            }
        }
    }

    /// Gives block `index` back. Fails, changing nothing, when the index is out of range
    /// ([`PoolError::NotFromPool`]) or the block is not owned by a `take`r
    /// ([`PoolError::NotAllocated`]: already free, or out as a raw pointer). O(1), lock-free,
    /// interrupt-safe.
    pub fn put(&self, index: u32) -> Result<(), PoolError> {
        let link = self
            .link
            .get(index as usize)
            .ok_or(PoolError::NotFromPool)?;
        let mut head = self.head.load(Ordering::SeqCst);
        // The ownership check and the first link write in one step: after it, no other `put`
        // of this block can pass, and no `take` can reach it until the CAS below publishes it.
        link.compare_exchange(IN_USE, unpack(head).1, Ordering::Relaxed, Ordering::Relaxed)
            .map_err(|_| PoolError::NotAllocated)?;
        loop {
            let (tag, _) = unpack(head);
            match self.head.compare_exchange_weak(
                head,
                pack(tag.wrapping_add(1), index),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => {
                    // Not published yet, so ours to rewrite: link to the new first block.
                    head = now;
                    link.store(unpack(now).1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Gives block `index` back without the ownership check of [`RawPool::put`] (one atomic
    /// read-modify-write less: a plain store of the link instead of a CAS).
    ///
    /// # Safety
    /// The caller owns block `index`: `take` (or `claim_raw`) returned it to the caller, and
    /// the caller has not given it back since. (Otherwise the stack would link a block twice
    /// and hand it to two owners.)
    pub unsafe fn put_owned(&self, index: u32) {
        let link = &self.link[index as usize];
        debug_assert_eq!(link.load(Ordering::Relaxed), IN_USE, "not the owner");
        let mut head = self.head.load(Ordering::SeqCst);
        loop {
            let (tag, first) = unpack(head);
            // Not published yet, so ours to write.
            link.store(first, Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                head,
                pack(tag.wrapping_add(1), index),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// Marks an owned block as handed out as a raw pointer (see [`RawPool::claim_raw`]).
    /// Only the block's owner may call it.
    pub fn mark_raw(&self, index: u32) {
        let link = &self.link[index as usize];
        debug_assert_eq!(link.load(Ordering::Relaxed), IN_USE, "not the owner");
        link.store(RAW, Ordering::Relaxed);
    }

    /// Takes ownership back of a block that [`RawPool::mark_raw`] handed out: fails with
    /// [`PoolError::NotAllocated`] unless it is out as a raw pointer now (so a second claim of
    /// the same pointer, or a claim of a free block, fails), and changes nothing then.
    pub fn claim_raw(&self, index: u32) -> Result<(), PoolError> {
        self.link
            .get(index as usize)
            .ok_or(PoolError::NotFromPool)?
            .compare_exchange(RAW, IN_USE, Ordering::Acquire, Ordering::Relaxed)
            .map(drop)
            .map_err(|_| PoolError::NotAllocated)
    }

    /// The start of block `index` (`index` < [`RawPool::count`]; panics otherwise).
    pub fn block_ptr(&self, index: u32) -> NonNull<u8> {
        assert!(index < self.count(), "block index out of range");
        // SAFETY: index < count, so the offset is inside the `count × stride` allocation.
        unsafe { self.memory.add(index as usize * self.stride) }
    }

    /// The index of the block that starts at `ptr`, or [`PoolError::NotFromPool`] for any
    /// pointer that is not exactly the start of one of this pool's blocks.
    pub fn index_of(&self, ptr: NonNull<u8>) -> Result<u32, PoolError> {
        let offset = (ptr.as_ptr() as usize)
            .checked_sub(self.memory.as_ptr() as usize)
            .ok_or(PoolError::NotFromPool)?;
        if offset >= self.layout.size() || !offset.is_multiple_of(self.stride) {
            return Err(PoolError::NotFromPool);
        }
        Ok((offset / self.stride) as u32)
    }
}

impl Drop for RawPool {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once here. Blocks still out as
        // raw pointers dangle from now on: using one was already an unsafe act of the holder.
        unsafe { alloc::alloc::dealloc(self.memory.as_ptr(), self.layout) };
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_layouts() {
        assert_eq!(RawPool::new(0, 16, 8).unwrap_err(), PoolError::BadLayout);
        assert_eq!(RawPool::new(4, 0, 8).unwrap_err(), PoolError::BadLayout);
        assert_eq!(RawPool::new(4, 16, 3).unwrap_err(), PoolError::BadLayout);
        assert_eq!(RawPool::new(4, 16, 8192).unwrap_err(), PoolError::BadLayout);
        assert_eq!(
            RawPool::new(MAX_BLOCKS + 1, 1, 1).unwrap_err(),
            PoolError::BadLayout
        );
        assert_eq!(
            RawPool::new(1 << 20, usize::MAX / 2, 8).unwrap_err(),
            PoolError::BadLayout
        );
    }

    #[test]
    fn hands_out_every_block_once_then_none_then_recovers() {
        let p = RawPool::new(5, 24, 16).unwrap();
        let mut got: Vec<u32> = (0..5).map(|_| p.take().expect("a free block")).collect();
        assert_eq!(p.take(), None, "empty");
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2, 3, 4]);
        for &i in &got {
            let ptr = p.block_ptr(i);
            assert_eq!(ptr.as_ptr() as usize % 16, 0, "aligned");
            assert_eq!(p.index_of(ptr), Ok(i));
        }
        // Blocks are disjoint: stride ≥ block size.
        assert!(p.block_ptr(1).as_ptr() as usize - p.block_ptr(0).as_ptr() as usize >= 24);
        p.put(3).unwrap();
        assert_eq!(p.take(), Some(3), "LIFO: the last freed comes back first");
        // SAFETY: block 3 was just taken back by this thread.
        unsafe { p.put_owned(3) };
        assert_eq!(p.put(3), Err(PoolError::NotAllocated), "put_owned freed it");
        assert_eq!(p.take(), Some(3));
        for i in got {
            p.put(i).unwrap();
        }
        assert_eq!((0..5).filter_map(|_| p.take()).count(), 5);
    }

    #[test]
    fn double_free_and_foreign_pointers_are_errors_that_change_nothing() {
        let p = RawPool::new(3, 64, 64).unwrap();
        let a = p.take().unwrap();
        p.put(a).unwrap();
        assert_eq!(p.put(a), Err(PoolError::NotAllocated), "double free");
        assert_eq!(p.put(7), Err(PoolError::NotFromPool));
        // Still exactly three distinct blocks.
        let mut all: Vec<u32> = (0..3).map(|_| p.take().unwrap()).collect();
        assert_eq!(p.take(), None);
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2]);
        let base = p.block_ptr(0);
        // SAFETY: inside the pool's allocation (block 0 is 64 bytes).
        let inside = unsafe { base.add(1) };
        assert_eq!(p.index_of(inside), Err(PoolError::NotFromPool));
        let end = NonNull::new(base.as_ptr().wrapping_add(3 * 64)).unwrap();
        assert_eq!(p.index_of(end), Err(PoolError::NotFromPool));
        let before = NonNull::new(base.as_ptr().wrapping_sub(64)).unwrap();
        assert_eq!(p.index_of(before), Err(PoolError::NotFromPool));
        let mut elsewhere = 0u8;
        assert_eq!(
            p.index_of(NonNull::from(&mut elsewhere)),
            Err(PoolError::NotFromPool)
        );
    }

    #[test]
    fn raw_round_trip_is_checked() {
        let p = RawPool::new(2, 8, 8).unwrap();
        let a = p.take().unwrap();
        assert_eq!(p.claim_raw(a), Err(PoolError::NotAllocated), "not raw yet");
        p.mark_raw(a);
        assert_eq!(
            p.put(a),
            Err(PoolError::NotAllocated),
            "raw blocks are not freed"
        );
        p.claim_raw(a).unwrap();
        assert_eq!(
            p.claim_raw(a),
            Err(PoolError::NotAllocated),
            "claimed twice"
        );
        p.put(a).unwrap();
        assert_eq!(p.claim_raw(a), Err(PoolError::NotAllocated), "free block");
    }

    #[test]
    fn threads_never_share_a_block() {
        // 4 threads take, write their id into the whole block, check it, and put back; a block
        // handed to two owners at once shows up as a foreign byte.
        let p = std::sync::Arc::new(RawPool::new(8, 64, 8).unwrap());
        let threads: Vec<_> = (1..=4u8)
            .map(|id| {
                let p = p.clone();
                std::thread::spawn(move || {
                    for _ in 0..50_000 {
                        let Some(i) = p.take() else { continue };
                        let ptr = p.block_ptr(i).as_ptr();
                        // SAFETY: block `i` is ours until `put`; 64 bytes.
                        let block = unsafe { core::slice::from_raw_parts_mut(ptr, 64) };
                        block.fill(id);
                        std::hint::spin_loop();
                        assert!(block.iter().all(|&b| b == id), "block shared");
                        p.put(i).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!((0..9).filter_map(|_| p.take()).count(), 8);
    }
}
