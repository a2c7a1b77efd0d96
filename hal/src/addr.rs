//! Address and identifier newtypes, so units live in types rather than in comments.

use core::fmt;

/// Size of the smallest page every supported MMU maps (x86_64 and aarch64 with a 4 KiB granule).
pub const PAGE_SIZE: u64 = 4096;

/// A physical address. Arithmetic is explicit (`checked_add`) because addresses often come from
/// firmware and must not silently wrap.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PhysAddr(pub u64);

impl PhysAddr {
    /// The raw value.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// `self + bytes`, or `None` on overflow.
    pub const fn checked_add(self, bytes: u64) -> Option<PhysAddr> {
        match self.0.checked_add(bytes) {
            Some(v) => Some(PhysAddr(v)),
            None => None,
        }
    }

    /// Rounds down to a multiple of `align` (a power of two).
    pub const fn align_down(self, align: u64) -> PhysAddr {
        PhysAddr(self.0 & !(align - 1))
    }

    /// Rounds up to a multiple of `align` (a power of two), or `None` on overflow.
    pub const fn align_up(self, align: u64) -> Option<PhysAddr> {
        match self.0.checked_add(align - 1) {
            Some(v) => Some(PhysAddr(v & !(align - 1))),
            None => None,
        }
    }

    /// Whether the address is a multiple of `align` (a power of two).
    pub const fn is_aligned(self, align: u64) -> bool {
        self.0 & (align - 1) == 0
    }
}

impl fmt::Debug for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhysAddr({:#x})", self.0)
    }
}

impl fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A logical CPU number: 0 is the boot CPU, numbered densely in bring-up order. This is not an
/// APIC ID or an MPIDR; the SMP layer keeps that mapping.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct CpuId(pub u32);

impl fmt::Display for CpuId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cpu{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_rounds_both_ways() {
        assert_eq!(PhysAddr(0x1234).align_down(0x1000), PhysAddr(0x1000));
        assert_eq!(PhysAddr(0x1234).align_up(0x1000), Some(PhysAddr(0x2000)));
        assert_eq!(PhysAddr(0x2000).align_up(0x1000), Some(PhysAddr(0x2000)));
        assert_eq!(PhysAddr(u64::MAX).align_up(0x1000), None);
        assert!(PhysAddr(0x3000).is_aligned(0x1000));
        assert!(!PhysAddr(0x3001).is_aligned(0x1000));
    }

    #[test]
    fn checked_add_refuses_to_wrap() {
        assert_eq!(PhysAddr(u64::MAX - 1).checked_add(2), None);
        assert_eq!(PhysAddr(1).checked_add(2), Some(PhysAddr(3)));
    }
}
