//! The e1000e driver's only unsafe code: the memory it shares with the device.
//!
//! [`DmaRegion`] is one page-aligned, zeroed heap allocation. Rhea's RAM (the heap with it) is
//! identity-mapped and there is no IOMMU, so its bus address is its address; an allocation
//! above the identity map (never the heap today) is refused. Every access is bounds- and
//! alignment-checked; descriptor words are single volatile accesses because the device writes
//! them while the driver reads. The region is freed only after the device was stopped
//! ([`super::ring::Nic`]'s `Drop` runs before its fields').

#![allow(unsafe_code)]

use super::ring::Dma;
use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use alloc::format;
use alloc::string::String;
use core::ptr::NonNull;

/// Addresses at or above this are not identity-mapped (thread stacks, the upper half).
const IDENTITY_LIMIT: usize = 1 << 47;

/// Memory shared with the device (see the module documentation).
#[derive(Debug)]
pub struct DmaRegion {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the region is a heap allocation only this value references (no other pointer to it
// exists outside the device); moving the value to the driver thread moves its only user.
unsafe impl Send for DmaRegion {}

impl DmaRegion {
    /// `len` zeroed bytes, page-aligned.
    pub fn new(len: usize) -> Result<DmaRegion, String> {
        let layout = Layout::from_size_align(len.max(1), 4096)
            .map_err(|_| format!("DMA region of {len} bytes: no such layout"))?;
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or_else(|| format!("no memory for {len} bytes of DMA"))?;
        let region = DmaRegion { ptr, layout };
        if (ptr.as_ptr() as usize).saturating_add(len) > IDENTITY_LIMIT {
            return Err("DMA memory outside the identity map".into());
        }
        Ok(region)
    }

    /// The address of `[offset, offset + len)`, checked against the region (and, for `align`,
    /// the alignment).
    fn at(&self, offset: usize, len: usize, align: usize) -> *mut u8 {
        assert!(
            offset.is_multiple_of(align)
                && offset
                    .checked_add(len)
                    .is_some_and(|e| e <= self.layout.size()),
            "DMA access {offset:#x}+{len:#x} outside the {:#x}-byte region",
            self.layout.size()
        );
        // SAFETY: `offset + len` is within the allocation (checked above), so the result
        // points into it (or one past its end for an empty access).
        unsafe { self.ptr.as_ptr().add(offset) }
    }
}

impl Drop for DmaRegion {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed` with this layout and is freed once, here.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

impl Dma for DmaRegion {
    fn bus_address(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    fn len(&self) -> usize {
        self.layout.size()
    }

    fn read_u64(&self, offset: usize) -> u64 {
        let p = self.at(offset, 8, 8).cast::<u64>();
        // SAFETY: in bounds and 8-aligned (`at`); memory the device may write concurrently
        // is read with one volatile access, never through a reference.
        unsafe { p.read_volatile() }
    }

    fn write_u64(&self, offset: usize, value: u64) {
        let p = self.at(offset, 8, 8).cast::<u64>();
        // SAFETY: as in `read_u64`.
        unsafe { p.write_volatile(value) }
    }

    fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        let p = self.at(offset, out.len(), 1);
        // SAFETY: the source range is in bounds (`at`); `out` is Rust memory, not in the
        // region, so they do not overlap; the device owns no part of the range (the caller
        // reads a buffer only after its descriptor's DD, with an acquire fence).
        unsafe { core::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), out.len()) }
    }

    fn write_bytes(&self, offset: usize, data: &[u8]) {
        let p = self.at(offset, data.len(), 1);
        // SAFETY: in bounds (`at`); `data` does not overlap the region; the device reads the
        // range only once the caller has given it the descriptor (after a fence).
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) }
    }
}
