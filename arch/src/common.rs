//! What every architecture shares, written once: which RAM the kernel maps and in what
//! chunks, the register-dump layout, and the frame-pointer walk (x86_64 and AArch64 both keep
//! `[fp] = caller's fp, [fp + 8] = return address`).
#![allow(
    unsafe_code,
    reason = "the frame walk reads stack words; it has a SAFETY note"
)]

use core::fmt;
use core::ops::Range;

pub use rhea_hal::arch::PagingError;
pub use rhea_hal::image::{KernelImage, Section};
use rhea_hal::memmap::{MemoryMap, RegionKind};

#[cfg_attr(
    target_os = "linux",
    allow(dead_code, reason = "LinuxU builds no page tables")
)]
const SIZE_4K: u64 = 4096;
#[cfg_attr(
    target_os = "linux",
    allow(dead_code, reason = "LinuxU builds no page tables")
)]
const SIZE_2M: u64 = 2 << 20;

#[cfg_attr(
    target_os = "linux",
    allow(dead_code, reason = "LinuxU builds no page tables")
)]
/// One step of the kernel's identity map of RAM (see [`for_each_ram_chunk`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum RamChunk {
    /// A 2 MiB-aligned block of plain RAM (no part of the image in it): read-write data.
    Block2M(u64),
    /// One 4 KiB page; `section` is the image section it holds, if any (its permissions),
    /// else plain read-write data.
    Page4K {
        /// The page's address (physical = virtual).
        addr: u64,
        /// The image section at `addr`.
        section: Option<Section>,
    },
}

#[cfg_attr(
    target_os = "linux",
    allow(dead_code, reason = "LinuxU builds no page tables")
)]
/// Walks the RAM the kernel maps — every usable, ACPI and shared region of `map`, whole pages
/// only, page 0 never — in the largest chunks the image allows: 2 MiB blocks where a block is
/// aligned, inside the region and clear of the image, 4 KiB pages elsewhere (so the image's
/// sections keep their own permissions). Calls `f` for each, in address order, and stops at
/// its first error.
pub(crate) fn for_each_ram_chunk(
    map: &MemoryMap,
    image: &KernelImage,
    mut f: impl FnMut(RamChunk) -> Result<(), PagingError>,
) -> Result<(), PagingError> {
    let img = image.range();
    for region in map.regions() {
        if !matches!(
            region.kind,
            RegionKind::Usable
                | RegionKind::AcpiReclaimable
                | RegionKind::AcpiNvs
                | RegionKind::Shared
        ) {
            continue;
        }
        let mut addr = region
            .start
            .align_up(SIZE_4K)
            .ok_or(PagingError::BadRange)?
            .0
            .max(SIZE_4K);
        let end = region.end().align_down(SIZE_4K).0;
        // RT: boot-time only; one iteration per page or 2 MiB chunk of RAM.
        while addr < end {
            let clear_of_image = addr + SIZE_2M <= img.start || addr >= img.end;
            if addr.is_multiple_of(SIZE_2M) && addr + SIZE_2M <= end && clear_of_image {
                f(RamChunk::Block2M(addr))?;
                addr += SIZE_2M;
            } else {
                let section = image.section_of(addr);
                f(RamChunk::Page4K { addr, section })?;
                addr += SIZE_4K;
            }
        }
    }
    Ok(())
}

#[cfg_attr(
    target_os = "linux",
    allow(dead_code, reason = "LinuxU builds no page tables")
)]
/// The 4 KiB pages of the `pages`-page stack whose top (exclusive) is `top`, lowest first;
/// `BadRange` if `top` is not page-aligned or the stack would wrap below zero.
pub(crate) fn stack_pages(top: u64, pages: u64) -> Result<impl Iterator<Item = u64>, PagingError> {
    let bottom = pages
        .checked_mul(SIZE_4K)
        .and_then(|bytes| top.checked_sub(bytes))
        .filter(|_| top.is_multiple_of(SIZE_4K))
        .ok_or(PagingError::BadRange)?;
    Ok((bottom..top).step_by(SIZE_4K as usize))
}

#[cfg_attr(
    target_os = "linux",
    allow(dead_code, reason = "LinuxU builds no page tables")
)]
/// The 4 KiB pages that cover the device registers `[phys, phys + len_bytes)`, lowest first;
/// `BadRange` if the range wraps.
pub(crate) fn pages_covering(
    phys: u64,
    len_bytes: u64,
) -> Result<impl Iterator<Item = u64>, PagingError> {
    let end = phys
        .checked_add(len_bytes)
        .and_then(|end| end.checked_next_multiple_of(SIZE_4K))
        .ok_or(PagingError::BadRange)?;
    Ok((phys & !(SIZE_4K - 1)..end).step_by(SIZE_4K as usize))
}

/// Prints `name value` pairs four to a line (the register dumps of fault reports).
pub(crate) fn dump(f: &mut fmt::Formatter<'_>, regs: &[(&str, u64)]) -> fmt::Result {
    for line in regs.chunks(4) {
        f.write_str("  ")?;
        for (name, value) in line {
            write!(f, " {name:>6} {value:#018x}")?;
        }
        f.write_str("\n")?;
    }
    Ok(())
}

/// Walks the frame-pointer chain from `fp`, calling `f` with each return address, as long as
/// every frame lies inside `stack` (so a corrupt chain cannot make it read unmapped memory).
/// Stops after 64 frames. Needs `-C force-frame-pointers=yes`, which xtask sets.
pub fn backtrace(mut fp: u64, stack: Range<u64>, mut f: impl FnMut(u64)) {
    // RT: bounded by 64 frames.
    for _ in 0..64 {
        if !fp.is_multiple_of(8) || fp < stack.start || fp.saturating_add(16) > stack.end {
            return;
        }
        // SAFETY: `[fp, fp + 16)` is inside `stack`, which the caller vouches is mapped.
        let (next, ret) = unsafe {
            (
                core::ptr::read(fp as *const u64),
                core::ptr::read((fp + 8) as *const u64),
            )
        };
        if ret == 0 {
            return;
        }
        f(ret);
        // Frames move towards higher addresses as we unwind; anything else is corruption.
        if next <= fp {
            return;
        }
        fp = next;
    }
}

/// The part of an `Arch` implementation that is the same in every architecture module: the
/// associated types (each module names them alike) and the functions that forward to the
/// module's own — which its boards also call, or which hold the unsafe code — given the module
/// that installs trap handlers (`$traps`). Expanded inside `impl Arch for …`; the paths
/// resolve in the invoking module.
macro_rules! arch_common_items {
    ($traps:ident) => {
        type Fault<'a> = Fault<'a>;
        type Registers = Registers;
        type AddressSpace = paging::AddressSpace;
        type Features = features::Features;
        type FpuMode = context::FpuMode;
        type FpuError = context::FpuError;

        fn set_fault_handler(handler: for<'a> fn(&Fault<'a>) -> !) {
            $traps::set_fault_handler(handler);
        }

        fn set_interrupt_handler(handler: fn(u8)) {
            $traps::set_interrupt_handler(handler);
        }

        fn features() -> features::Features {
            features::report()
        }

        fn cpu_rng() -> Option<&'static str> {
            random::cpu_rng()
        }

        fn cpu_rng_fill(buf: &mut [u8]) -> bool {
            random::cpu_rng_fill(buf)
        }

        fn init_fpu() -> Result<context::FpuMode, context::FpuError> {
            context::init_fpu()
        }

        #[inline]
        fn cpu_id() -> CpuId {
            cpu_id()
        }

        #[inline]
        fn read_cycle_counter() -> u64 {
            read_cycle_counter()
        }

        fn halt_forever() -> ! {
            halt_forever()
        }

        unsafe fn switch(from_sp: *mut usize, to_sp: usize) {
            // SAFETY: the caller upholds the trait's conditions, which are `context::switch`'s.
            unsafe { context::switch(from_sp, to_sp) }
        }

        unsafe fn init_stack(top: u64, entry: extern "C" fn(usize) -> !, arg: usize) -> usize {
            // SAFETY: as for `switch`.
            unsafe { context::init_stack(top, entry, arg) }
        }
    };
}
pub(crate) use arch_common_items;

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn chunks(map: &MemoryMap, image: &KernelImage) -> Vec<RamChunk> {
        let mut out = Vec::new();
        for_each_ram_chunk(map, image, |c| {
            out.push(c);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn ram_is_mapped_in_2m_blocks_except_around_the_image_and_page_zero() {
        let mut m = MemoryMap::new();
        m.push(0, 0x9_fc00, RegionKind::Usable).unwrap(); // low memory, ragged end
        m.push(0x20_0000, 0x60_0000, RegionKind::Usable).unwrap(); // 2..8 MiB
        m.push(0x80_0000, 0x1000, RegionKind::Reserved).unwrap(); // never mapped
        let m = m.finish().unwrap();
        // A 3-page image at 4 MiB: text, rodata, data.
        let image = KernelImage::new(
            0x40_0000..0x40_1000,
            0x40_1000..0x40_2000,
            0x40_2000..0x40_3000,
        );
        let got = chunks(&m, &image);
        // Low memory: pages 1..0x9f (page 0 skipped, the partial last page dropped).
        let low: Vec<_> = got
            .iter()
            .take_while(|c| matches!(c, RamChunk::Page4K { addr, .. } if *addr < 0x20_0000))
            .collect();
        assert_eq!(low.len(), 0x9e);
        assert_eq!(
            low[0],
            &RamChunk::Page4K {
                addr: 0x1000,
                section: None
            }
        );
        let rest = &got[low.len()..];
        // 2..4 MiB is one block; 4..6 MiB holds the image, so pages; 6..8 MiB a block.
        assert_eq!(rest[0], RamChunk::Block2M(0x20_0000));
        assert_eq!(
            rest[1],
            RamChunk::Page4K {
                addr: 0x40_0000,
                section: Some(Section::Text)
            }
        );
        assert_eq!(
            rest[2],
            RamChunk::Page4K {
                addr: 0x40_1000,
                section: Some(Section::Rodata)
            }
        );
        assert_eq!(
            rest[3],
            RamChunk::Page4K {
                addr: 0x40_2000,
                section: Some(Section::Data)
            }
        );
        assert_eq!(
            rest[4],
            RamChunk::Page4K {
                addr: 0x40_3000,
                section: None
            }
        );
        assert_eq!(rest.len(), 1 + 512 + 1);
        assert_eq!(rest[513], RamChunk::Block2M(0x60_0000));
    }

    #[test]
    fn stack_and_device_page_ranges_are_checked() {
        let pages: Vec<u64> = stack_pages(0x10_0000, 3).unwrap().collect();
        assert_eq!(pages, [0xf_d000, 0xf_e000, 0xf_f000]);
        assert_eq!(stack_pages(0x10_0000, 0).unwrap().count(), 0);
        assert!(stack_pages(0x10_0800, 1).is_err(), "unaligned top");
        assert!(stack_pages(0x2000, 3).is_err(), "below zero");
        assert!(
            stack_pages(u64::MAX & !0xfff, u64::MAX).is_err(),
            "size overflows"
        );
        // A register block straddling a page boundary needs both pages.
        let dev: Vec<u64> = pages_covering(0x3000_0ff8, 16).unwrap().collect();
        assert_eq!(dev, [0x3000_0000, 0x3000_1000]);
        assert_eq!(pages_covering(0x3000_0000, 0x1000).unwrap().count(), 1);
        assert!(pages_covering(u64::MAX - 8, 16).is_err(), "wraps");
        assert!(
            pages_covering(u64::MAX - 0x800, 0x10).is_err(),
            "end rounds past the top"
        );
    }

    #[test]
    fn the_first_error_stops_the_walk() {
        let mut m = MemoryMap::new();
        m.push(0x20_0000, 0x60_0000, RegionKind::Usable).unwrap();
        let m = m.finish().unwrap();
        let image = KernelImage::new(0x1000..0x2000, 0x2000..0x2000, 0x2000..0x3000);
        let mut calls = 0;
        let r = for_each_ram_chunk(&m, &image, |_| {
            calls += 1;
            if calls == 2 {
                Err(PagingError::OutOfFrames)
            } else {
                Ok(())
            }
        });
        assert_eq!(r, Err(PagingError::OutOfFrames));
        assert_eq!(calls, 2);
    }
}
