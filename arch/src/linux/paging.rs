//! "Page tables" as a Linux process: memory is whatever the process maps. The kernel's RAM is one
//! anonymous mapping the board makes at a fixed address (so physical = virtual, as on the
//! identity-mapped bare-metal boards); kernel stacks are mapped at [`STACK_REGION_BASE`] and
//! above with `MAP_FIXED_NOREPLACE`, with the rest of each slot left unmapped as the guard, so an
//! overflow raises SIGSEGV at a known address.

use super::sys;
use core::ops::Range;
use rhea_mm::{FrameAllocator, MemoryMap};

/// Where kernel stacks are mapped: 64 TiB, far above the image, the heap and the RAM mapping.
pub const STACK_REGION_BASE: u64 = 0x4000_0000_0000;

const PAGE: u64 = 4096;

/// The image's sections (unused as a process: Linux mapped the executable).
#[derive(Clone, Debug)]
pub struct KernelImage {
    /// Code.
    pub text: Range<u64>,
    /// Constants.
    pub rodata: Range<u64>,
    /// Data and bss.
    pub data: Range<u64>,
}

impl KernelImage {
    /// The whole image.
    pub fn range(&self) -> Range<u64> {
        self.text.start..self.data.end
    }
}

/// Why a mapping failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PagingError {
    /// The process could not map the memory.
    OutOfFrames,
    /// The range is already mapped.
    AlreadyMapped {
        /// Its start.
        virt: u64,
    },
    /// An unaligned or wrapping range.
    BadRange,
}

impl core::fmt::Display for PagingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::OutOfFrames => f.write_str("mmap failed"),
            Self::AlreadyMapped { virt } => write!(f, "{virt:#x} is already mapped"),
            Self::BadRange => f.write_str("unaligned or wrapping address range"),
        }
    }
}

/// The process's address space.
#[derive(Debug)]
pub struct AddressSpace(());

impl AddressSpace {
    /// Nothing to build: Linux maps the executable and the board mapped RAM.
    pub fn new_kernel(
        _frames: &mut FrameAllocator<'_>,
        _map: &MemoryMap,
        _image: &KernelImage,
    ) -> Result<Self, PagingError> {
        Ok(Self(()))
    }

    /// Nothing to switch.
    ///
    /// # Safety
    /// None needed; `unsafe` to match the bare-metal signature.
    pub unsafe fn activate(&self) {}

    /// Maps `pages` pages ending at `top`, with a `PROT_NONE` guard page right below them (so
    /// nothing else the process maps can land there and absorb an overflow).
    pub fn map_stack(
        &mut self,
        _frames: &mut FrameAllocator<'_>,
        top: u64,
        pages: u64,
    ) -> Result<(), PagingError> {
        let bottom = top.checked_sub(pages * PAGE).ok_or(PagingError::BadRange)?;
        let guard = bottom.checked_sub(PAGE).ok_or(PagingError::BadRange)?;
        if !sys::map_fixed(guard, PAGE, false) {
            return Err(PagingError::AlreadyMapped { virt: guard });
        }
        if sys::map_fixed(bottom, pages * PAGE, true) {
            Ok(())
        } else {
            // SAFETY: the guard was mapped just above and nothing uses it.
            unsafe { sys::unmap(guard, PAGE) };
            Err(PagingError::AlreadyMapped { virt: bottom })
        }
    }

    /// Unmaps a stack mapped by [`AddressSpace::map_stack`], with its guard page.
    pub fn unmap_stack(
        &mut self,
        _frames: &mut FrameAllocator<'_>,
        top: u64,
        pages: u64,
    ) -> Result<(), PagingError> {
        let bottom = top.checked_sub(pages * PAGE).ok_or(PagingError::BadRange)?;
        // SAFETY: the caller (the runtime's stack table) only frees stacks of reaped threads.
        unsafe { sys::unmap(bottom - PAGE, (pages + 1) * PAGE) };
        Ok(())
    }

    /// No device registers to map in a process.
    pub fn map_mmio(
        &mut self,
        _frames: &mut FrameAllocator<'_>,
        _phys: u64,
        _len_bytes: u64,
    ) -> Result<(), PagingError> {
        Err(PagingError::BadRange)
    }
}
