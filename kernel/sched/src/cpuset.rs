//! CPU affinity masks.

use core::fmt;

/// A set of CPUs (bit `n` = logical CPU `n`), at most [`crate::MAX_CPUS`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CpuSet(u64);

impl CpuSet {
    /// No CPU.
    pub const EMPTY: CpuSet = CpuSet(0);
    /// Every CPU.
    pub const ALL: CpuSet = CpuSet(u64::MAX);

    /// Just `cpu`.
    pub const fn single(cpu: usize) -> CpuSet {
        CpuSet(1 << cpu)
    }

    /// From a raw bit mask.
    pub const fn from_bits(bits: u64) -> CpuSet {
        CpuSet(bits)
    }

    /// The raw bit mask.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether `cpu` is in the set.
    pub const fn contains(self, cpu: usize) -> bool {
        cpu < 64 && self.0 & (1 << cpu) != 0
    }

    /// The CPUs in both sets.
    pub const fn intersect(self, other: CpuSet) -> CpuSet {
        CpuSet(self.0 & other.0)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The lowest CPU in the set.
    pub const fn first(self) -> Option<usize> {
        if self.0 == 0 {
            None
        } else {
            Some(self.0.trailing_zeros() as usize)
        }
    }

    /// The first `n` CPUs.
    pub const fn first_n(n: usize) -> CpuSet {
        if n >= 64 {
            CpuSet::ALL
        } else {
            CpuSet((1 << n) - 1)
        }
    }

    /// Iterates the CPUs in the set, lowest first. RT: O(CPUs in the set), one
    /// trailing-zeros count each (scanning all 64 bits made every scheduling decision on an
    /// SMP system cost microseconds).
    pub fn iter(self) -> impl Iterator<Item = usize> {
        let mut bits = self.0;
        core::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let c = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(c)
        })
    }
}

impl fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CpuSet({:#x})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iter_yields_exactly_the_members_lowest_first() {
        assert_eq!(CpuSet::from_bits(0).iter().count(), 0);
        let v: Vec<usize> = CpuSet::from_bits(0b1010_0001 | 1 << 63).iter().collect();
        assert_eq!(v, [0, 5, 7, 63]);
        assert_eq!(CpuSet::ALL.iter().count(), 64);
        assert_eq!(CpuSet::single(9).iter().collect::<Vec<_>>(), [9]);
        for bits in [1u64, 0x8000_0000_0000_0001, 0xdead_beef, u64::MAX >> 1] {
            let naive: Vec<usize> = (0..64).filter(|&c| bits & (1 << c) != 0).collect();
            assert_eq!(CpuSet::from_bits(bits).iter().collect::<Vec<_>>(), naive);
        }
    }
}
