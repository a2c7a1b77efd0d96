//! "Page tables" as a Linux process: memory is whatever the process maps. The kernel's RAM is one
//! anonymous mapping the board makes at a fixed address (so physical = virtual, as on the
//! identity-mapped bare-metal boards); kernel stacks are mapped at [`STACK_REGION_BASE`] and
//! above with `MAP_FIXED_NOREPLACE`, with the rest of each slot left unmapped as the guard, so an
//! overflow raises SIGSEGV at a known address.

use super::sys;
use rhea_hal::arch::FrameSource;
use rhea_mm::MemoryMap;

/// Where kernel stacks are mapped: 64 TiB, far above the image, the heap and the RAM mapping.
pub const STACK_REGION_BASE: u64 = 0x4000_0000_0000;

const PAGE: u64 = 4096;

pub use crate::common::{KernelImage, PagingError};

/// The process's address space.
#[derive(Debug)]
pub struct AddressSpace(());

impl rhea_hal::arch::AddressSpace for AddressSpace {
    const STACK_REGION_BASE: u64 = STACK_REGION_BASE;
    /// Nothing to build: Linux maps the executable and the board mapped RAM.
    fn new_kernel(
        _frames: &mut impl FrameSource,
        _map: &MemoryMap,
        _image: &KernelImage,
    ) -> Result<Self, PagingError> {
        Ok(Self(()))
    }

    /// Nothing to switch.
    ///
    /// # Safety
    /// None needed; `unsafe` to match the bare-metal signature.
    unsafe fn activate(&self) {}

    /// Maps `pages` pages ending at `top`, with a `PROT_NONE` guard page right below them (so
    /// nothing else the process maps can land there and absorb an overflow).
    fn map_stack(
        &mut self,
        _frames: &mut impl FrameSource,
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
    fn unmap_stack(
        &mut self,
        _frames: &mut impl FrameSource,
        top: u64,
        pages: u64,
    ) -> Result<(), PagingError> {
        let bottom = top.checked_sub(pages * PAGE).ok_or(PagingError::BadRange)?;
        // SAFETY: the caller (the runtime's stack table) only frees stacks of reaped threads.
        unsafe { sys::unmap(bottom - PAGE, (pages + 1) * PAGE) };
        Ok(())
    }

    /// No device registers to map in a process.
    fn map_mmio(
        &mut self,
        _frames: &mut impl FrameSource,
        _phys: u64,
        _len_bytes: u64,
    ) -> Result<(), PagingError> {
        Err(PagingError::BadRange)
    }
}
