//! The only `unsafe` code of the Xen drivers: memory shared with another domain or with Xen.
//!
//! [`SharedMem`] is a pointer and a length: ring pages, packet buffers, the xenstore interface
//! page, grant-table frames. The other side (a back-end domain, xenstored, the hypervisor)
//! reads and writes it while we do, so every access here is either an atomic load or store of
//! a naturally aligned `u8`/`u16`/`u32`/`u64` (never torn; ordered with explicit fences, [`mb`],
//! [`rmb`] and [`wmb`], as Xen's ring protocols prescribe) or a byte copy of a buffer the protocol says the other
//! side is not writing at that moment (a misbehaving peer can then only make us read garbage
//! bytes, never make us touch memory outside the region). Every access is bounds-checked and
//! returns [`XenError::OutOfBounds`] or [`XenError::Misaligned`] instead of reaching outside.
//!
//! Two ways to get one:
//! - [`SharedMem::new`] (unsafe): the board wraps memory it mapped or allocated (the xenstore
//!   page, grant-table frames, pages from its allocator);
//! - [`SharedMem::alloc`] (safe): zeroed, page-aligned pages from the heap, freed when the
//!   last clone is dropped; their frame number is their address `>> 12`, which is the real
//!   guest frame number where the heap is identity-mapped (Rhea's RAM is) and a unique key in
//!   host tests.
//!
//! [`TryLock`] is the one lock of the Xen drivers (it guards the xenstore connection); see its
//! documentation for its rules.

#![allow(
    unsafe_code,
    reason = "memory shared with other domains and Xen: raw pointers, atomics from pointers, a lock cell"
)]

use super::XenError;
use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};

/// Xen's page size (4 KiB on x86 and on Arm guests).
pub const PAGE_SIZE: usize = 4096;

/// A heap allocation backing [`SharedMem::alloc`]; freed on drop.
struct Owned {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed(layout)` in `SharedMem::alloc` and this is the
        // only `Owned` for it (kept in one `Arc`), so it is freed exactly once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

// SAFETY: `Owned` is only an ownership token for the allocation; it is never dereferenced.
unsafe impl Send for Owned {}
// SAFETY: as above: no access through `&Owned`.
unsafe impl Sync for Owned {}

/// Memory shared with another domain or Xen: `len` bytes at `ptr`, starting at guest frame
/// number `gfn` (physically contiguous, so page `i` of it is frame `gfn + i`).
///
/// Cloning makes another handle on the same memory (both see each other's stores); memory
/// from [`SharedMem::alloc`] is freed when the last handle goes.
#[derive(Clone)]
pub struct SharedMem {
    ptr: NonNull<u8>,
    len: usize,
    gfn: u64,
    _owner: Option<Arc<Owned>>,
}

impl core::fmt::Debug for SharedMem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "SharedMem({:p}+{:#x}, gfn {:#x})",
            self.ptr, self.len, self.gfn
        )
    }
}

// SAFETY: all access to the memory goes through atomics or through byte copies the protocols
// order with fences; the memory is not tied to a thread (the other side is another domain).
unsafe impl Send for SharedMem {}
// SAFETY: as above; `&SharedMem` only allows those same accesses.
unsafe impl Sync for SharedMem {}

impl SharedMem {
    /// Wraps memory the board provides.
    ///
    /// # Safety
    ///
    /// `[ptr, ptr + len)` must be mapped readable and writable for as long as this handle or
    /// any clone of it exists, must not be referenced as ordinary Rust data (`&`/`&mut`)
    /// anywhere else, and `ptr` must be aligned to 8 bytes (board memory is page-aligned).
    /// `gfn` must be the guest frame number of its first byte if the memory is handed to
    /// another domain (grants, ring references); the region must then be physically
    /// contiguous.
    pub unsafe fn new(ptr: NonNull<u8>, len: usize, gfn: u64) -> SharedMem {
        SharedMem {
            ptr,
            len,
            gfn,
            _owner: None,
        }
    }

    /// `pages` zeroed, page-aligned pages from the heap (`None` when the heap is exhausted or
    /// `pages` is 0). The frame number is the address `>> 12`: the guest frame number only
    /// where the heap is identity-mapped.
    pub fn alloc(pages: usize) -> Option<SharedMem> {
        let size = pages.checked_mul(PAGE_SIZE).filter(|&s| s > 0)?;
        let layout = Layout::from_size_align(size, PAGE_SIZE).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        Some(SharedMem {
            ptr,
            len: size,
            gfn: (ptr.as_ptr() as usize >> 12) as u64,
            _owner: Some(Arc::new(Owned { ptr, layout })),
        })
    }

    /// The same memory under another frame number (host tests: heap addresses there do not
    /// fit the 32-bit frames of grant entries v1).
    #[cfg(test)]
    pub(crate) fn with_gfn(mut self, gfn: u64) -> SharedMem {
        self.gfn = gfn;
        self
    }

    /// Bytes of the region.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Guest frame number of the first byte.
    pub fn gfn(&self) -> u64 {
        self.gfn
    }

    /// The address of the first byte (for logs and for boards that need it).
    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// A handle on whole page `index` of this region (its own frame number, same lifetime).
    pub fn page(&self, index: usize) -> Result<SharedMem, XenError> {
        let offset = index.checked_mul(PAGE_SIZE).ok_or(XenError::OutOfBounds {
            offset: usize::MAX,
            len: PAGE_SIZE,
            size: self.len,
        })?;
        self.sub(offset, PAGE_SIZE)
    }

    /// A handle on `len` bytes at `offset` of this region (same lifetime; its frame number is
    /// that of the page holding its first byte).
    pub fn sub(&self, offset: usize, len: usize) -> Result<SharedMem, XenError> {
        self.check(offset, len, 1)?;
        Ok(SharedMem {
            // SAFETY: `check` proved `offset + len <= self.len`, so the result is inside the
            // region or one past its end (and non-null, being past a non-null pointer without
            // wrapping).
            ptr: unsafe { self.ptr.add(offset) },
            len,
            gfn: self.gfn + (offset / PAGE_SIZE) as u64,
            _owner: self._owner.clone(),
        })
    }

    fn check(&self, offset: usize, len: usize, align: usize) -> Result<(), XenError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => {}
            _ => {
                return Err(XenError::OutOfBounds {
                    offset,
                    len,
                    size: self.len,
                });
            }
        }
        if !(self.ptr.as_ptr() as usize + offset).is_multiple_of(align) {
            return Err(XenError::Misaligned { offset, align });
        }
        Ok(())
    }

    fn at<T>(&self, offset: usize) -> Result<*mut T, XenError> {
        self.check(offset, size_of::<T>(), align_of::<T>())?;
        // SAFETY: in bounds (checked above).
        Ok(unsafe { self.ptr.as_ptr().add(offset) }.cast())
    }

    /// Loads the byte at `offset`.
    pub fn read_u8(&self, offset: usize) -> Result<u8, XenError> {
        let p = self.at::<u8>(offset)?;
        // SAFETY: `p` is in bounds and aligned, valid for the handle's lifetime (contract of
        // `new`, or owned by `alloc`), and only ever accessed atomically or by raw copies.
        Ok(unsafe { AtomicU8::from_ptr(p) }.load(Ordering::Relaxed))
    }

    /// Loads the `u16` at `offset` (2-aligned; native-endian, as Xen's ABI is the CPU's).
    pub fn read_u16(&self, offset: usize) -> Result<u16, XenError> {
        let p = self.at::<u16>(offset)?;
        // SAFETY: as in `read_u8`; `at` checked the alignment.
        Ok(unsafe { AtomicU16::from_ptr(p) }.load(Ordering::Relaxed))
    }

    /// Loads the `u32` at `offset` (4-aligned).
    pub fn read_u32(&self, offset: usize) -> Result<u32, XenError> {
        let p = self.at::<u32>(offset)?;
        // SAFETY: as in `read_u16`.
        Ok(unsafe { AtomicU32::from_ptr(p) }.load(Ordering::Relaxed))
    }

    /// Loads the `u64` at `offset` (8-aligned).
    pub fn read_u64(&self, offset: usize) -> Result<u64, XenError> {
        let p = self.at::<u64>(offset)?;
        // SAFETY: as in `read_u16`.
        Ok(unsafe { AtomicU64::from_ptr(p) }.load(Ordering::Relaxed))
    }

    /// Stores the byte at `offset`.
    pub fn write_u8(&self, offset: usize, v: u8) -> Result<(), XenError> {
        let p = self.at::<u8>(offset)?;
        // SAFETY: as in `read_u8`.
        unsafe { AtomicU8::from_ptr(p) }.store(v, Ordering::Relaxed);
        Ok(())
    }

    /// Stores the `u16` at `offset` (2-aligned).
    pub fn write_u16(&self, offset: usize, v: u16) -> Result<(), XenError> {
        let p = self.at::<u16>(offset)?;
        // SAFETY: as in `read_u16`.
        unsafe { AtomicU16::from_ptr(p) }.store(v, Ordering::Relaxed);
        Ok(())
    }

    /// Stores the `u32` at `offset` (4-aligned).
    pub fn write_u32(&self, offset: usize, v: u32) -> Result<(), XenError> {
        let p = self.at::<u32>(offset)?;
        // SAFETY: as in `read_u16`.
        unsafe { AtomicU32::from_ptr(p) }.store(v, Ordering::Relaxed);
        Ok(())
    }

    /// Stores the `u64` at `offset` (8-aligned).
    pub fn write_u64(&self, offset: usize, v: u64) -> Result<(), XenError> {
        let p = self.at::<u64>(offset)?;
        // SAFETY: as in `read_u16`.
        unsafe { AtomicU64::from_ptr(p) }.store(v, Ordering::Relaxed);
        Ok(())
    }

    /// Atomically replaces the `u16` at `offset` with `new` if it is `current` (sequentially
    /// consistent, a full barrier); returns the value found. For grant flags, which Xen
    /// updates concurrently.
    pub fn compare_exchange_u16(
        &self,
        offset: usize,
        current: u16,
        new: u16,
    ) -> Result<Result<u16, u16>, XenError> {
        let p = self.at::<u16>(offset)?;
        // SAFETY: as in `read_u16`.
        let a = unsafe { AtomicU16::from_ptr(p) };
        Ok(a.compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst))
    }

    /// Copies `dst.len()` bytes from `offset` into `dst`.
    pub fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> Result<(), XenError> {
        self.check(offset, dst.len(), 1)?;
        // SAFETY: the source range is inside the region (checked); `dst` is ordinary memory
        // that cannot overlap shared memory (shared memory is never referenced as Rust data).
        // The protocol gives us the buffer at this point; if the peer writes it anyway we copy
        // bytes of its choosing, which the callers treat as untrusted data.
        unsafe {
            core::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
        Ok(())
    }

    /// Copies `src` into the region at `offset`.
    pub fn write_bytes(&self, offset: usize, src: &[u8]) -> Result<(), XenError> {
        self.check(offset, src.len(), 1)?;
        // SAFETY: the destination range is inside the region (checked) and is not referenced as
        // Rust data anywhere; `src` cannot overlap it (see `read_bytes`).
        unsafe {
            core::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len());
        }
        Ok(())
    }

    /// Zeroes `len` bytes at `offset`.
    pub fn zero(&self, offset: usize, len: usize) -> Result<(), XenError> {
        self.check(offset, len, 1)?;
        // SAFETY: in bounds (checked); shared memory is never referenced as Rust data.
        unsafe { core::ptr::write_bytes(self.ptr.as_ptr().add(offset), 0, len) };
        Ok(())
    }
}

/// A full barrier (`mb()` of Xen's headers): earlier loads and stores are visible to the
/// other side before later ones.
pub fn mb() {
    core::sync::atomic::fence(Ordering::SeqCst);
}

/// A read barrier (`rmb()`): loads after it see at least what the other side published
/// before the index we loaded before it.
pub fn rmb() {
    core::sync::atomic::fence(Ordering::Acquire);
}

/// A write barrier (`wmb()`): stores before it are visible before stores after it.
pub fn wmb() {
    core::sync::atomic::fence(Ordering::Release);
}

/// A lock that is only ever *tried*: [`try_lock`](Self::try_lock) fails instead of spinning,
/// and callers retry against a deadline (the xenstore client does, through
/// [`XenHost::relax`](super::XenHost::relax)), so a holder that never lets go costs a timeout
/// error, never a hang.
///
/// Rules: thread context only (never taken in an interrupt handler, so it needs no interrupt
/// masking); a leaf lock (nothing else is locked while it is held; grant-table operations
/// under it are lock-free).
pub struct TryLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&mut T` to one holder at a time (the `locked` flag, acquired with
// Acquire and released with Release), so sharing the lock is sharing `T` between threads by
// exclusive turns, which needs `T: Send`.
unsafe impl<T: Send> Sync for TryLock<T> {}

impl<T> core::fmt::Debug for TryLock<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "TryLock(locked: {})",
            self.locked.load(Ordering::Relaxed)
        )
    }
}

impl<T> TryLock<T> {
    /// An unlocked lock around `value`.
    pub const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// The value, if no one holds the lock.
    pub fn try_lock(&self) -> Option<TryLockGuard<'_, T>> {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| TryLockGuard { lock: self })
    }
}

/// Exclusive access to a [`TryLock`]'s value; unlocks on drop.
pub struct TryLockGuard<'a, T> {
    lock: &'a TryLock<T>,
}

impl<T> core::fmt::Debug for TryLockGuard<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("TryLockGuard")
    }
}

impl<T> core::ops::Deref for TryLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while `locked` is held by it, so no other reference to
        // the value exists.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> core::ops::DerefMut for TryLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only borrow through the guard.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for TryLockGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_are_bounds_and_alignment_checked() {
        let m = SharedMem::alloc(1).unwrap();
        assert_eq!(m.len(), PAGE_SIZE);
        assert_eq!(m.addr() % PAGE_SIZE, 0);
        assert_eq!(m.gfn(), (m.addr() >> 12) as u64);
        m.write_u32(8, 0xdead_beef).unwrap();
        assert_eq!(m.read_u32(8).unwrap(), 0xdead_beef);
        assert_eq!(m.read_u16(8).unwrap(), 0xbeef);
        m.write_u64(4088, u64::MAX).unwrap();
        assert_eq!(m.read_u8(4095).unwrap(), 0xff);
        assert!(matches!(
            m.read_u64(4092),
            Err(XenError::OutOfBounds {
                offset: 4092,
                len: 8,
                size: 4096
            })
        ));
        assert!(matches!(m.read_u8(4096), Err(XenError::OutOfBounds { .. })));
        assert!(matches!(
            m.read_u32(2),
            Err(XenError::Misaligned {
                offset: 2,
                align: 4
            })
        ));
        assert!(matches!(
            m.write_bytes(4000, &[0; 97]),
            Err(XenError::OutOfBounds { .. })
        ));
        assert!(m.read_bytes(usize::MAX, &mut [0; 2]).is_err());
        let mut b = [0u8; 4];
        m.write_bytes(100, &[1, 2, 3, 4]).unwrap();
        m.read_bytes(100, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4]);
        m.zero(100, 2).unwrap();
        m.read_bytes(100, &mut b).unwrap();
        assert_eq!(b, [0, 0, 3, 4]);
        assert_eq!(m.compare_exchange_u16(8, 0xbeef, 7).unwrap(), Ok(0xbeef));
        assert_eq!(m.compare_exchange_u16(8, 0xbeef, 9).unwrap(), Err(7));
    }

    #[test]
    fn pages_are_views_with_their_own_frame() {
        let m = SharedMem::alloc(3).unwrap();
        let p2 = m.page(2).unwrap();
        assert_eq!(p2.gfn(), m.gfn() + 2);
        p2.write_u8(0, 42).unwrap();
        assert_eq!(m.read_u8(2 * PAGE_SIZE).unwrap(), 42);
        assert!(m.page(3).is_err());
        assert!(m.page(usize::MAX).is_err());
        drop(m);
        // The view keeps the allocation alive.
        assert_eq!(p2.read_u8(0).unwrap(), 42);
        assert!(SharedMem::alloc(0).is_none());
    }

    #[test]
    fn try_lock_is_exclusive() {
        let l = TryLock::new(5);
        let mut g = l.try_lock().unwrap();
        assert!(l.try_lock().is_none());
        *g += 1;
        drop(g);
        assert_eq!(*l.try_lock().unwrap(), 6);
    }
}
