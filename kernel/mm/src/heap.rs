//! The kernel heap: `linked_list_allocator` behind a spin lock, as the `#[global_allocator]`.
//!
//! Lock and interrupt safety: the heap lock is a plain spin lock; this crate knows nothing of
//! interrupts. The runtime's `#[global_allocator]` wraps it with interrupts masked, so a holder
//! is never preempted (the scheduler allocates under its own lock, see
//! `kernel/runtime/src/memory.rs`). Nothing allocates in interrupt context all the same (a
//! rule of the IRQ, timer and switch paths, see `docs/ARCHITECTURE.md`). It is a leaf lock: no
//! other lock is taken while it is held.
//!
//! Exhaustion returns a null pointer from `alloc`, which Rust turns into
//! `handle_alloc_error` → a panic naming the size, reported like every other panic.
#![allow(
    unsafe_code,
    reason = "handing raw memory to an allocator is inherently unsafe"
)]

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use linked_list_allocator::Heap as Inner;
use spin::Mutex;

/// A lockable heap; empty until [`Heap::init`].
pub struct Heap {
    inner: Mutex<Inner>,
}

impl core::fmt::Debug for Heap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // `try_lock`: formatting must not deadlock against an allocation in progress.
        match self.inner.try_lock() {
            Some(h) => f
                .debug_struct("Heap")
                .field("used", &h.used())
                .field("free", &h.free())
                .finish(),
            None => f.write_str("Heap { <locked> }"),
        }
    }
}

impl Default for Heap {
    fn default() -> Self {
        Self::empty()
    }
}

impl Heap {
    /// An empty heap: every allocation fails until [`Heap::init`].
    pub const fn empty() -> Self {
        Self {
            inner: Mutex::new(Inner::empty()),
        }
    }

    /// Gives the heap its memory.
    ///
    /// # Safety
    /// 1. `[start, start + len_bytes)` is mapped writable, used by nothing else, for as long as
    ///    the heap lives (for the global heap: forever).
    /// 2. It is called once.
    pub unsafe fn init(&self, start: *mut u8, len_bytes: usize) {
        // SAFETY: conditions 1 and 2 are the caller's, passed on unchanged.
        unsafe { self.inner.lock().init(start, len_bytes) }
    }

    /// `(used, free)` bytes.
    pub fn usage(&self) -> (usize, usize) {
        let h = self.inner.lock();
        (h.used(), h.free())
    }
}

// SAFETY: `linked_list_allocator::Heap` returns blocks that are disjoint, sized and aligned as
// requested; the mutex serialises all access to its free list.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.inner
            .lock()
            .allocate_first_fit(layout)
            .map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: GlobalAlloc's contract: `ptr` came from `alloc` on this heap with `layout`.
            unsafe { self.inner.lock().deallocate(p, layout) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_until_exhausted_then_recovers() {
        let mut backing = vec![0u64; 1024]; // 8 KiB
        let heap = Heap::empty();
        // SAFETY: `backing` outlives `heap` within this test and is used by nothing else.
        unsafe { heap.init(backing.as_mut_ptr().cast(), 8192) };
        let layout = Layout::from_size_align(1000, 8).unwrap();
        let mut ptrs = Vec::new();
        loop {
            // SAFETY: non-zero-size layout.
            let p = unsafe { heap.alloc(layout) };
            if p.is_null() {
                break;
            }
            ptrs.push(p);
        }
        assert!((6..=8).contains(&ptrs.len()), "got {}", ptrs.len());
        for p in ptrs.drain(..) {
            // SAFETY: allocated above with the same layout.
            unsafe { heap.dealloc(p, layout) };
        }
        assert_eq!(heap.usage().0, 0);
        // SAFETY: as above.
        assert!(!unsafe { heap.alloc(layout) }.is_null());
    }
}
