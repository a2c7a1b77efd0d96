//! Kernel page tables (SDM Vol. 3A §4.5, 4-level paging), built with the `x86_64` crate's
//! mapper over frames from `rhea-mm`.
//!
//! The layout:
//! - physical RAM (usable and ACPI regions) is identity-mapped, writable, never executable,
//!   with 2 MiB pages wherever a 2 MiB chunk is wholly RAM and holds no part of the kernel;
//! - the kernel image is mapped with its section permissions (W^X): text read-only and
//!   executable, rodata read-only, data and bss writable;
//! - page 0 is never mapped, so null dereferences fault;
//! - MMIO and reserved regions are not mapped until a driver asks;
//! - kernel stacks live at [`STACK_REGION_BASE`] and above, each with unmapped guard pages
//!   below it, so an overflow faults instead of corrupting a neighbour.
//!
//! Page-table frames are reached through the identity map (offset 0). While the board's boot
//! tables are live only the first 4 GiB are mapped, so the frame allocator's low-first order
//! matters until [`AddressSpace::activate`].

use rhea_hal::arch::FrameSource;
use rhea_mm::MemoryMap;
use x86_64::structures::paging::{
    FrameAllocator as CrateFrameAllocator, Mapper, OffsetPageTable, Page, PageTable,
    PageTableFlags as F, PhysFrame, Size2MiB, Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

/// Where kernel stacks are mapped (the start of the upper canonical half, far from the
/// identity map).
pub const STACK_REGION_BASE: u64 = 0xffff_8000_0000_0000;

pub use crate::common::{KernelImage, PagingError};
use crate::common::{RamChunk, Section, for_each_ram_chunk, pages_covering, stack_pages};

/// The page flags of an image section.
fn flags_for(section: Section) -> F {
    match section {
        Section::Text => F::PRESENT,
        Section::Rodata => F::PRESENT | F::NO_EXECUTE,
        Section::Data => F::PRESENT | F::WRITABLE | F::NO_EXECUTE,
    }
}

/// Adapts the `rhea-mm` allocator to the crate's trait.
struct Frames<'a, S: FrameSource>(&'a mut S);

// SAFETY: every frame returned comes from the frame allocator, which hands each frame out once
// until it is freed; the mapper zeroes frames it uses as page tables.
unsafe impl<S: FrameSource> CrateFrameAllocator<Size4KiB> for Frames<'_, S> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let p = self.0.alloc_frame()?;
        Some(PhysFrame::containing_address(PhysAddr::new(p.0)))
    }
}

/// The kernel's page tables.
#[derive(Debug)]
pub struct AddressSpace {
    pml4: u64,
}

impl rhea_hal::arch::AddressSpace for AddressSpace {
    const STACK_REGION_BASE: u64 = STACK_REGION_BASE;
    /// Builds the kernel address space described in the module documentation. Does not switch
    /// to it.
    fn new_kernel(
        frames: &mut impl FrameSource,
        map: &MemoryMap,
        image: &KernelImage,
    ) -> Result<Self, PagingError> {
        let pml4 = frames.alloc_frame().ok_or(PagingError::OutOfFrames)?.0;
        // SAFETY: the frame was just allocated, is identity-mapped (below 4 GiB, see module
        // docs) and nothing else refers to it.
        unsafe { (pml4 as *mut PageTable).write(PageTable::new()) };
        let mut space = Self { pml4 };
        let ram = F::PRESENT | F::WRITABLE | F::NO_EXECUTE | F::GLOBAL;
        for_each_ram_chunk(map, image, |chunk| match chunk {
            RamChunk::Block2M(addr) => space.map_2m(frames, addr, ram),
            RamChunk::Page4K { addr, section } => {
                let flags = section.map_or(ram, |s| flags_for(s) | F::GLOBAL);
                space.map_4k(frames, addr, addr, flags)
            }
        })?;
        for r in image.early_mmio.iter().filter(|r| !r.is_empty()) {
            space.map_mmio(frames, r.start, r.end - r.start)?;
        }
        Ok(space)
    }

    /// Switches this CPU to these page tables.
    ///
    /// # Safety
    /// Everything the CPU will touch next — the running code, its stack, the data it uses — is
    /// mapped in this address space (true for the kernel image, RAM and stacks mapped with
    /// [`AddressSpace::map_stack`]).
    unsafe fn activate(&self) {
        use x86_64::registers::control::{Cr3, Cr3Flags};
        let frame = PhysFrame::containing_address(PhysAddr::new(self.pml4));
        // SAFETY: forwarded to the caller.
        unsafe { Cr3::write(frame, Cr3Flags::empty()) };
    }

    /// Maps `pages` fresh frames, writable and not executable, ending at `top` (exclusive). The
    /// caller keeps the pages below unmapped as the guard.
    fn map_stack(
        &mut self,
        frames: &mut impl FrameSource,
        top: u64,
        pages: u64,
    ) -> Result<(), PagingError> {
        for virt in stack_pages(top, pages)? {
            let phys = frames.alloc_frame().ok_or(PagingError::OutOfFrames)?.0;
            self.map_4k(
                frames,
                virt,
                phys,
                F::PRESENT | F::WRITABLE | F::NO_EXECUTE | F::GLOBAL,
            )?;
        }
        Ok(())
    }

    /// Unmaps the `pages` pages ending at `top` (a stack mapped by [`AddressSpace::map_stack`])
    /// and returns their frames to `frames`.
    fn unmap_stack(
        &mut self,
        frames: &mut impl FrameSource,
        top: u64,
        pages: u64,
    ) -> Result<(), PagingError> {
        for virt in stack_pages(top, pages)? {
            let page = Page::<Size4KiB>::from_start_address(VirtAddr::new(virt))
                .map_err(|_| PagingError::BadRange)?;
            if let Ok((frame, flush)) = self.mapper().unmap(page) {
                flush.flush();
                frames.free_frame(rhea_hal::PhysAddr(frame.start_address().as_u64()));
            }
        }
        Ok(())
    }

    /// Identity-maps the device registers `[phys, phys + len_bytes)` uncached (PCD | PWT),
    /// writable, never executable. Pages already mapped (a second driver for the same
    /// device page) are left as they are.
    fn map_mmio(
        &mut self,
        frames: &mut impl FrameSource,
        phys: u64,
        len_bytes: u64,
    ) -> Result<(), PagingError> {
        for page in pages_covering(phys, len_bytes)? {
            if !self.is_mapped(page) {
                let flags = F::PRESENT
                    | F::WRITABLE
                    | F::NO_EXECUTE
                    | F::NO_CACHE
                    | F::WRITE_THROUGH
                    | F::GLOBAL;
                self.map_4k(frames, page, page, flags)?;
                // The page may have been cached as not-present; nothing else can have it.
                x86_64::instructions::tlb::flush(VirtAddr::new(page));
            }
        }
        Ok(())
    }
}

impl AddressSpace {
    /// Whether `virt` is mapped.
    pub fn is_mapped(&self, virt: u64) -> bool {
        let Ok(v) = VirtAddr::try_new(virt) else {
            return false;
        };
        self.mapper().translate_addr(v).is_some()
    }

    fn mapper(&self) -> OffsetPageTable<'static> {
        // SAFETY: `pml4` is this address space's top-level table; all page-table frames are
        // identity-mapped (offset 0), and the mapper is only used from `&self`/`&mut self`
        // methods, which the owner serialises.
        unsafe { OffsetPageTable::new(&mut *(self.pml4 as *mut PageTable), VirtAddr::new(0)) }
    }

    fn map_4k(
        &mut self,
        frames: &mut impl FrameSource,
        virt: u64,
        phys: u64,
        flags: F,
    ) -> Result<(), PagingError> {
        let page = Page::<Size4KiB>::from_start_address(
            VirtAddr::try_new(virt).map_err(|_| PagingError::BadRange)?,
        )
        .map_err(|_| PagingError::BadRange)?;
        let frame = PhysFrame::<Size4KiB>::from_start_address(PhysAddr::new(phys))
            .map_err(|_| PagingError::BadRange)?;
        let parent = F::PRESENT | F::WRITABLE;
        // SAFETY: the frame is either RAM being identity-mapped (aliasing its own address, which
        // is how the kernel addresses RAM) or a fresh frame for a stack; neither aliases other
        // Rust objects through a different address.
        let flush = unsafe {
            self.mapper()
                .map_to_with_table_flags(page, frame, flags, parent, &mut Frames(frames))
        };
        flush.map(|f| f.ignore()).map_err(|e| map_err(e, virt))
    }

    fn map_2m(
        &mut self,
        frames: &mut impl FrameSource,
        addr: u64,
        flags: F,
    ) -> Result<(), PagingError> {
        let page = Page::<Size2MiB>::from_start_address(VirtAddr::new(addr))
            .map_err(|_| PagingError::BadRange)?;
        let frame = PhysFrame::<Size2MiB>::from_start_address(PhysAddr::new(addr))
            .map_err(|_| PagingError::BadRange)?;
        // SAFETY: as in `map_4k`: an identity mapping of RAM.
        let flush = unsafe {
            self.mapper().map_to_with_table_flags(
                page,
                frame,
                flags,
                F::PRESENT | F::WRITABLE,
                &mut Frames(frames),
            )
        };
        flush.map(|f| f.ignore()).map_err(|e| map_err(e, addr))
    }
}

fn map_err<S: x86_64::structures::paging::PageSize>(
    e: x86_64::structures::paging::mapper::MapToError<S>,
    virt: u64,
) -> PagingError {
    use x86_64::structures::paging::mapper::MapToError;
    match e {
        MapToError::FrameAllocationFailed => PagingError::OutOfFrames,
        MapToError::ParentEntryHugePage | MapToError::PageAlreadyMapped(_) => {
            PagingError::AlreadyMapped { virt }
        }
    }
}
