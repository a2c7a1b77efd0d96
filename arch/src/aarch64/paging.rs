//! Kernel page tables: VMSAv8-64 stage 1, 4 KiB granule, 48-bit virtual addresses through
//! `TTBR0_EL1` only (Arm ARM D8 "The AArch64 Virtual Memory System Architecture"). The
//! descriptors are written here; the system registers go through `aarch64-cpu`.
//!
//! The layout matches the x86_64 port:
//! - usable RAM is identity-mapped, Normal write-back, writable, never executable, with 2 MiB
//!   blocks wherever a 2 MiB chunk is wholly RAM and holds no part of the kernel;
//! - the kernel image is mapped with its section permissions (W^X): text read-only and
//!   executable, rodata read-only, data and bss writable; `SCTLR_EL1.WXN` makes the CPU refuse
//!   to execute anything writable in any case;
//! - page 0 is never mapped, so null dereferences fault;
//! - device registers are mapped Device-nGnRE, never executable, when a driver asks
//!   ([`AddressSpace::map_mmio`]) — and the board's early devices (its console) from the start
//!   ([`KernelImage::early_mmio`]), so output keeps working across the switch;
//! - kernel stacks live at [`STACK_REGION_BASE`] and above, each with unmapped guard pages
//!   below it.
//!
//! Page-table frames are reached through the identity map. While the boot map is live only the
//! first 4 GiB are mapped, so the frame allocator's low-first order matters until
//! [`AddressSpace::activate`].

use aarch64_cpu::registers::{MAIR_EL1, ReadWriteable, SCTLR_EL1, TCR_EL1, TTBR0_EL1, Writeable};
use rhea_hal::arch::FrameSource;
use rhea_mm::MemoryMap;

/// Where kernel stacks are mapped: 2^47, above any physical address the identity map can reach
/// on the supported boards and below the 48-bit limit of `TTBR0_EL1`.
pub const STACK_REGION_BASE: u64 = 0x0000_8000_0000_0000;

const SIZE_4K: u64 = 4096;
const SIZE_2M: u64 = 2 << 20;
const ENTRIES: usize = 512;

/// Memory attributes, by `MAIR_EL1` index (Arm ARM D17.2.97): 0 Normal write-back
/// read/write-allocate (inner and outer), 1 Device-nGnRE, 2 Device-nGnRnE, 3 Normal
/// non-cacheable. The entry code programs the same value.
pub(super) const MAIR_VALUE: u64 = 0x44_00_04_ff;
const ATTR_NORMAL: u64 = 0 << 2;
const ATTR_DEVICE: u64 = 1 << 2;

/// `TCR_EL1` without IPS: T0SZ = 16 (48-bit), inner/outer write-back walks, inner shareable,
/// 4 KiB granule; TTBR1 walks disabled (EPD1) with a valid granule (TG1 = 4 KiB).
pub(super) const TCR_BASE: u64 = 16 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (2 << 30);

/// Descriptor bits (Arm ARM D8.3 "Translation table descriptor formats").
const VALID: u64 = 1;
const TABLE_OR_PAGE: u64 = 1 << 1;
/// AP[2]: read-only.
const AP_RO: u64 = 1 << 7;
/// SH = inner shareable.
const SH_INNER: u64 = 3 << 8;
/// Access flag (set, or the first access faults).
const AF: u64 = 1 << 10;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;
/// Bits 47:12: the output address.
const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;

const NORMAL_RW: u64 = ATTR_NORMAL | SH_INNER | AF | PXN | UXN;
const NORMAL_RO: u64 = ATTR_NORMAL | SH_INNER | AF | AP_RO | PXN | UXN;
const NORMAL_RX: u64 = ATTR_NORMAL | SH_INNER | AF | AP_RO | UXN;
const DEVICE_RW: u64 = ATTR_DEVICE | AF | PXN | UXN;

/// The boot map's 2 MiB blocks (written by the entry code): RAM executable (the image is not yet
/// split by permission), devices not.
pub(super) const BOOT_NORMAL_BLOCK: u64 = VALID | ATTR_NORMAL | SH_INNER | AF | UXN;
pub(super) const BOOT_DEVICE_BLOCK: u64 = VALID | ATTR_DEVICE | AF | PXN | UXN;

pub use crate::common::{KernelImage, PagingError};
use crate::common::{RamChunk, Section, for_each_ram_chunk, pages_covering, stack_pages};

/// The attributes of an image section.
fn attrs_for(section: Section) -> u64 {
    match section {
        Section::Text => NORMAL_RX,
        Section::Rodata => NORMAL_RO,
        Section::Data => NORMAL_RW,
    }
}

/// The index of `virt` in the table of `level` (0..=3).
const fn index(virt: u64, level: u32) -> usize {
    ((virt >> (39 - 9 * level)) & (ENTRIES as u64 - 1)) as usize
}

/// The kernel's page tables.
#[derive(Debug)]
pub struct AddressSpace {
    /// Physical (= virtual) address of the level-0 table.
    root: u64,
}

/// Makes descriptor writes visible to the table walker before the next access that may use
/// them (Arm ARM D8.2.6: a DSB, then an ISB for the instruction stream).
fn publish_descriptors() {
    // SAFETY: barriers only.
    unsafe { core::arch::asm!("dsb ishst", "isb", options(nostack, preserves_flags)) };
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
        let root = Self::new_table(frames)?;
        let mut space = Self { root };
        for_each_ram_chunk(map, image, |chunk| match chunk {
            RamChunk::Block2M(addr) => space.map_block_2m(frames, addr, NORMAL_RW),
            RamChunk::Page4K { addr, section } => {
                space.map_4k(frames, addr, addr, section.map_or(NORMAL_RW, attrs_for))
            }
        })?;
        for r in image.early_mmio.iter().filter(|r| !r.is_empty()) {
            space.map_mmio(frames, r.start, r.end - r.start)?;
        }
        Ok(space)
    }

    /// Switches this CPU to these page tables (and sets `SCTLR_EL1.WXN`).
    ///
    /// # Safety
    /// Everything the CPU will touch next — the running code, its stack, the data it uses, the
    /// console registers — is mapped in this address space (true for the image, RAM, stacks
    /// mapped with [`AddressSpace::map_stack`] and the image's `early_mmio`).
    unsafe fn activate(&self) {
        // Same attributes and translation regime as the boot map (the entry code wrote the same
        // values); written again here so this module owns them.
        MAIR_EL1.write(
            MAIR_EL1::Attr0_Normal_Outer::WriteBack_NonTransient_ReadWriteAlloc
                + MAIR_EL1::Attr0_Normal_Inner::WriteBack_NonTransient_ReadWriteAlloc
                + MAIR_EL1::Attr1_Device::nonGathering_nonReordering_EarlyWriteAck
                + MAIR_EL1::Attr2_Device::nonGathering_nonReordering_noEarlyWriteAck
                + MAIR_EL1::Attr3_Normal_Outer::NonCacheable
                + MAIR_EL1::Attr3_Normal_Inner::NonCacheable,
        );
        TCR_EL1.modify(
            TCR_EL1::T0SZ.val(16)
                + TCR_EL1::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
                + TCR_EL1::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
                + TCR_EL1::SH0::Inner
                + TCR_EL1::TG0::KiB_4
                + TCR_EL1::EPD1::DisableTTBR1Walks,
        );
        publish_descriptors();
        TTBR0_EL1.set_baddr(self.root);
        // SAFETY: the caller guarantees the new tables map everything in use; the old entries
        // are dropped from the TLB before anything else runs.
        unsafe {
            core::arch::asm!(
                "isb",
                "tlbi vmalle1",
                "dsb nsh",
                "isb",
                options(nostack, preserves_flags)
            )
        };
        SCTLR_EL1.modify(SCTLR_EL1::WXN::Enable);
        // SAFETY: WXN may be cached in TLB entries (Arm ARM D8.4.1.4): flush them once more.
        unsafe {
            core::arch::asm!(
                "isb",
                "tlbi vmalle1",
                "dsb nsh",
                "isb",
                options(nostack, preserves_flags)
            )
        };
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
            self.map_4k(frames, virt, phys, NORMAL_RW)?;
        }
        publish_descriptors();
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
            if let Some(entry) = self.leaf(virt, 3) {
                // SAFETY: `entry` points into one of this address space's tables (identity
                // mapped); the owner serialises changes.
                let old = unsafe { entry.read_volatile() };
                if old & (VALID | TABLE_OR_PAGE) == VALID | TABLE_OR_PAGE {
                    // SAFETY: as above. Break before make: invalid, then TLB invalidation by
                    // address (Arm ARM D8.13.2), then the frame is reused.
                    unsafe {
                        entry.write_volatile(0);
                        core::arch::asm!(
                            "dsb ishst",
                            "tlbi vaae1is, {}",
                            "dsb ish",
                            "isb",
                            in(reg) virt >> 12,
                            options(nostack, preserves_flags)
                        );
                    }
                    frames.free_frame(rhea_hal::PhysAddr(old & ADDR_MASK));
                }
            }
        }
        Ok(())
    }

    /// Identity-maps the device registers `[phys, phys + len_bytes)` Device-nGnRE, writable,
    /// never executable. Pages already mapped (a second driver for the same device page) are
    /// left as they are.
    fn map_mmio(
        &mut self,
        frames: &mut impl FrameSource,
        phys: u64,
        len_bytes: u64,
    ) -> Result<(), PagingError> {
        for page in pages_covering(phys, len_bytes)? {
            if !self.is_mapped(page) {
                self.map_4k(frames, page, page, DEVICE_RW)?;
            }
        }
        publish_descriptors();
        Ok(())
    }
}

impl AddressSpace {
    /// Whether `virt` is mapped.
    pub fn is_mapped(&self, virt: u64) -> bool {
        if virt >> 48 != 0 {
            return false;
        }
        let mut table = self.root;
        for level in 0..=3 {
            // SAFETY: `table` is one of this address space's tables, identity-mapped.
            let entry = unsafe {
                (table as *const u64)
                    .add(index(virt, level))
                    .read_volatile()
            };
            if entry & VALID == 0 {
                return false;
            }
            if level == 3 || entry & TABLE_OR_PAGE == 0 {
                return true; // a page, or a block at level 1/2
            }
            table = entry & ADDR_MASK;
        }
        false
    }

    fn new_table(frames: &mut impl FrameSource) -> Result<u64, PagingError> {
        let t = frames.alloc_frame().ok_or(PagingError::OutOfFrames)?.0;
        // SAFETY: the frame was just allocated (nothing else refers to it) and is
        // identity-mapped (below 4 GiB while the boot map is live, see module docs).
        unsafe { core::ptr::write_bytes(t as *mut u8, 0, SIZE_4K as usize) };
        Ok(t)
    }

    /// The entry for `virt` in its table of `level`, if the walk down to that table exists.
    fn leaf(&self, virt: u64, level: u32) -> Option<*mut u64> {
        let mut table = self.root;
        for l in 0..level {
            // SAFETY: `table` is one of this address space's tables, identity-mapped.
            let entry = unsafe { (table as *const u64).add(index(virt, l)).read_volatile() };
            if entry & (VALID | TABLE_OR_PAGE) != VALID | TABLE_OR_PAGE {
                return None;
            }
            table = entry & ADDR_MASK;
        }
        Some((table as *mut u64).wrapping_add(index(virt, level)))
    }

    /// The entry for `virt` in its table of `level`, creating the tables above it.
    fn entry_creating(
        &mut self,
        frames: &mut impl FrameSource,
        virt: u64,
        level: u32,
    ) -> Result<*mut u64, PagingError> {
        if virt >> 48 != 0 {
            return Err(PagingError::BadRange);
        }
        let mut table = self.root;
        for l in 0..level {
            let slot = (table as *mut u64).wrapping_add(index(virt, l));
            // SAFETY: `slot` is inside one of this address space's tables, identity-mapped; the
            // owner serialises changes.
            let entry = unsafe { slot.read_volatile() };
            table = if entry & VALID == 0 {
                let t = Self::new_table(frames)?;
                // SAFETY: as above; the new table is zeroed (all invalid).
                unsafe { slot.write_volatile(t | VALID | TABLE_OR_PAGE) };
                t
            } else if entry & TABLE_OR_PAGE == 0 {
                return Err(PagingError::AlreadyMapped { virt }); // a block covers it
            } else {
                entry & ADDR_MASK
            };
        }
        Ok((table as *mut u64).wrapping_add(index(virt, level)))
    }

    fn map_4k(
        &mut self,
        frames: &mut impl FrameSource,
        virt: u64,
        phys: u64,
        attrs: u64,
    ) -> Result<(), PagingError> {
        if !virt.is_multiple_of(SIZE_4K) || !phys.is_multiple_of(SIZE_4K) || phys >> 48 != 0 {
            return Err(PagingError::BadRange);
        }
        let slot = self.entry_creating(frames, virt, 3)?;
        // SAFETY: `slot` is a level-3 entry of this address space (see `entry_creating`).
        unsafe {
            if slot.read_volatile() & VALID != 0 {
                return Err(PagingError::AlreadyMapped { virt });
            }
            slot.write_volatile(phys | attrs | VALID | TABLE_OR_PAGE);
        }
        Ok(())
    }

    fn map_block_2m(
        &mut self,
        frames: &mut impl FrameSource,
        addr: u64,
        attrs: u64,
    ) -> Result<(), PagingError> {
        if !addr.is_multiple_of(SIZE_2M) {
            return Err(PagingError::BadRange);
        }
        let slot = self.entry_creating(frames, addr, 2)?;
        // SAFETY: `slot` is a level-2 entry of this address space (see `entry_creating`).
        unsafe {
            if slot.read_volatile() & VALID != 0 {
                return Err(PagingError::AlreadyMapped { virt: addr });
            }
            slot.write_volatile(addr | attrs | VALID);
        }
        Ok(())
    }
}
