//! The validated physical memory map.
//!
//! Boards parse their firmware's description into [`Region`]s and push them here; [`MemoryMap`]
//! refuses anything that would let a later stage hand out memory that is not RAM.

use crate::{PAGE_SIZE, PhysAddr};
use core::fmt;

/// How many regions a map may hold. QEMU reports 3–8, real PCs 10–40; 64 leaves room without a
/// heap (the map is built before the heap exists).
pub const MAX_REGIONS: usize = 64;

/// Highest physical address any supported CPU can use: 52 bits is the architectural maximum on
/// both x86_64 (SDM Vol. 3A §4.1.4, MAXPHYADDR ≤ 52) and aarch64 (FEAT_LPA).
pub const MAX_PHYS_ADDR: u64 = 1 << 52;

/// What a physical region holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RegionKind {
    /// Ordinary RAM, free for the kernel to use.
    Usable,
    /// RAM holding ACPI tables that may be reclaimed after they are read.
    AcpiReclaimable,
    /// ACPI non-volatile storage; never touched.
    AcpiNvs,
    /// Anything else firmware reserved (including "unusable", "disabled", persistent memory).
    Reserved,
    /// Memory shared with the hypervisor or other guests that the platform placed outside RAM
    /// (Xen's "magic pages" on Arm: the xenstore and console rings): mapped like RAM — the
    /// other side maps it cacheable — but never handed out.
    Shared,
}

/// One contiguous physical range.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Region {
    /// First byte.
    pub start: PhysAddr,
    /// Length in bytes (never zero in a [`MemoryMap`]).
    pub len_bytes: u64,
    /// What it holds.
    pub kind: RegionKind,
}

impl Region {
    /// One past the last byte. Only valid for regions accepted by [`MemoryMap::push`], which
    /// checked that it does not overflow.
    pub const fn end(&self) -> PhysAddr {
        PhysAddr(self.start.0 + self.len_bytes)
    }

    /// Whether `[addr, addr + len)` lies wholly inside this region.
    pub fn contains(&self, addr: PhysAddr, len_bytes: u64) -> bool {
        match addr.0.checked_add(len_bytes) {
            Some(end) => addr.0 >= self.start.0 && end <= self.end().0,
            None => false,
        }
    }
}

/// Why a memory map was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MemoryMapError {
    /// More than [`MAX_REGIONS`] regions.
    TooManyRegions,
    /// A region of length zero.
    EmptyRegion { start: u64 },
    /// A region whose end does not fit in 64 bits.
    Wraps { start: u64, len_bytes: u64 },
    /// A region reaching beyond [`MAX_PHYS_ADDR`].
    BeyondPhysicalLimit { start: u64, len_bytes: u64 },
    /// Two regions share bytes.
    Overlap { first: u64, second: u64 },
    /// No usable RAM at all.
    NoUsableMemory,
}

impl fmt::Display for MemoryMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooManyRegions => write!(f, "more than {MAX_REGIONS} memory regions"),
            Self::EmptyRegion { start } => write!(f, "empty memory region at {start:#x}"),
            Self::Wraps { start, len_bytes } => {
                write!(f, "memory region {start:#x}+{len_bytes:#x} wraps past 2^64")
            }
            Self::BeyondPhysicalLimit { start, len_bytes } => write!(
                f,
                "memory region {start:#x}+{len_bytes:#x} ends beyond the 52-bit physical limit"
            ),
            Self::Overlap { first, second } => {
                write!(f, "memory regions at {first:#x} and {second:#x} overlap")
            }
            Self::NoUsableMemory => write!(f, "no usable RAM in the memory map"),
        }
    }
}

/// A sorted list of non-overlapping physical regions with at least one usable one.
///
/// Built with [`MemoryMap::push`] for every firmware entry and then [`MemoryMap::finish`]; only
/// a finished map is handed to the rest of the kernel.
#[derive(Clone)]
pub struct MemoryMap {
    regions: [Region; MAX_REGIONS],
    len: usize,
}

impl fmt::Debug for MemoryMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.regions()).finish()
    }
}

impl Default for MemoryMap {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryMap {
    /// An empty map.
    pub const fn new() -> Self {
        const EMPTY: Region = Region {
            start: PhysAddr(0),
            len_bytes: 0,
            kind: RegionKind::Reserved,
        };
        Self {
            regions: [EMPTY; MAX_REGIONS],
            len: 0,
        }
    }

    /// Adds one firmware entry after checking it on its own (length, wrap, physical limit).
    /// Overlap is checked by [`MemoryMap::finish`], once everything is in.
    pub fn push(
        &mut self,
        start: u64,
        len_bytes: u64,
        kind: RegionKind,
    ) -> Result<(), MemoryMapError> {
        if len_bytes == 0 {
            return Err(MemoryMapError::EmptyRegion { start });
        }
        let end = start
            .checked_add(len_bytes)
            .ok_or(MemoryMapError::Wraps { start, len_bytes })?;
        if end > MAX_PHYS_ADDR {
            return Err(MemoryMapError::BeyondPhysicalLimit { start, len_bytes });
        }
        if self.len == MAX_REGIONS {
            return Err(MemoryMapError::TooManyRegions);
        }
        self.regions[self.len] = Region {
            start: PhysAddr(start),
            len_bytes,
            kind,
        };
        self.len += 1;
        Ok(())
    }

    /// Sorts the regions and checks the map as a whole: no overlaps, some usable RAM.
    pub fn finish(mut self) -> Result<Self, MemoryMapError> {
        // Insertion sort: at most MAX_REGIONS entries, no allocation, stable.
        let regions = &mut self.regions[..self.len];
        for i in 1..regions.len() {
            let mut j = i;
            while j > 0 && regions[j - 1].start > regions[j].start {
                regions.swap(j - 1, j);
                j -= 1;
            }
        }
        for pair in regions.windows(2) {
            if pair[0].end() > pair[1].start {
                return Err(MemoryMapError::Overlap {
                    first: pair[0].start.0,
                    second: pair[1].start.0,
                });
            }
        }
        if !regions
            .iter()
            .any(|r| r.kind == RegionKind::Usable && r.len_bytes >= PAGE_SIZE)
        {
            return Err(MemoryMapError::NoUsableMemory);
        }
        Ok(self)
    }

    /// All regions, sorted by start address.
    pub fn regions(&self) -> &[Region] {
        &self.regions[..self.len]
    }

    /// The usable RAM regions, sorted.
    pub fn usable(&self) -> impl Iterator<Item = &Region> + '_ {
        self.regions()
            .iter()
            .filter(|r| r.kind == RegionKind::Usable)
    }

    /// Total usable RAM in bytes.
    pub fn usable_bytes(&self) -> u64 {
        self.usable().map(|r| r.len_bytes).sum()
    }

    /// The region wholly containing `[addr, addr + len)`, if any.
    pub fn region_containing(&self, addr: PhysAddr, len_bytes: u64) -> Option<&Region> {
        self.regions().iter().find(|r| r.contains(addr, len_bytes))
    }

    /// One past the highest address of any region (the end of physical memory to map).
    pub fn end(&self) -> PhysAddr {
        self.regions().last().map_or(PhysAddr(0), Region::end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    #[test]
    fn sorts_and_accepts_a_qemu_like_map() {
        let mut m = MemoryMap::new();
        m.push(0x10_0000, 0x7ee_0000, RegionKind::Usable).unwrap();
        m.push(0, 0x9_fc00, RegionKind::Usable).unwrap();
        m.push(0xfeff_c000, 0x4000, RegionKind::Reserved).unwrap();
        m.push(0x9_fc00, 0x400, RegionKind::Reserved).unwrap();
        let m = m.finish().unwrap();
        let starts: Vec<u64> = m.regions().iter().map(|r| r.start.0).collect();
        assert_eq!(starts, [0, 0x9_fc00, 0x10_0000, 0xfeff_c000]);
        assert_eq!(m.usable_bytes(), 0x9_fc00 + 0x7ee_0000);
        assert_eq!(m.end(), PhysAddr(0xff00_0000));
        assert!(m.region_containing(PhysAddr(0x20_0000), 0x1000).is_some());
        assert!(
            m.region_containing(PhysAddr(0x9_f000), 0x2000).is_none(),
            "straddles two"
        );
    }

    #[test]
    fn rejects_empty_wrapping_and_absurd_regions() {
        let mut m = MemoryMap::new();
        assert_eq!(
            m.push(0x1000, 0, RegionKind::Usable),
            Err(MemoryMapError::EmptyRegion { start: 0x1000 })
        );
        assert!(matches!(
            m.push(u64::MAX - 10, 100, RegionKind::Usable),
            Err(MemoryMapError::Wraps { .. })
        ));
        assert!(matches!(
            m.push(MAX_PHYS_ADDR - 0x1000, 0x2000, RegionKind::Usable),
            Err(MemoryMapError::BeyondPhysicalLimit { .. })
        ));
    }

    #[test]
    fn rejects_overlap_in_any_order() {
        let mut m = MemoryMap::new();
        m.push(0x20_0000, 0x10_0000, RegionKind::Usable).unwrap();
        m.push(0x10_0000, 0x10_1000, RegionKind::Reserved).unwrap();
        assert_eq!(
            m.finish().unwrap_err(),
            MemoryMapError::Overlap {
                first: 0x10_0000,
                second: 0x20_0000
            }
        );
    }

    #[test]
    fn rejects_a_map_without_ram() {
        let mut m = MemoryMap::new();
        m.push(0xfee0_0000, 0x1000, RegionKind::Reserved).unwrap();
        assert_eq!(m.finish().unwrap_err(), MemoryMapError::NoUsableMemory);
        assert_eq!(
            MemoryMap::new().finish().unwrap_err(),
            MemoryMapError::NoUsableMemory
        );
    }

    #[test]
    fn refuses_more_than_capacity() {
        let mut m = MemoryMap::new();
        for i in 0..MAX_REGIONS as u64 {
            m.push(i * 0x1000, 0x1000, RegionKind::Usable).unwrap();
        }
        assert_eq!(
            m.push(0x100_0000, 0x1000, RegionKind::Usable),
            Err(MemoryMapError::TooManyRegions)
        );
    }
}
