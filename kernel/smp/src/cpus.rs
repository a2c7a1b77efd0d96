//! The logical CPU numbering: index 0 is the boot CPU, the others follow in firmware order.
//! Hardware IDs (APIC IDs, MPIDR affinities) are carried as `u64`.

/// The most CPUs the kernel runs (the scheduler's limit, `rhea_sched::MAX_CPUS`).
pub const MAX_CPUS: usize = 64;

/// CPUs by logical index, with what was left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuTable {
    ids: [u64; MAX_CPUS],
    len: usize,
    /// CPUs described but beyond the limit (not started).
    pub over_limit: usize,
    /// Entries naming a hardware ID already in the table (ignored).
    pub duplicates: usize,
}

impl CpuTable {
    /// A table holding only the boot CPU, `boot_id`.
    pub const fn new(boot_id: u64) -> CpuTable {
        let mut ids = [0; MAX_CPUS];
        ids[0] = boot_id;
        CpuTable {
            ids,
            len: 1,
            over_limit: 0,
            duplicates: 0,
        }
    }

    /// Adds a CPU found in firmware tables. The boot CPU's own entry and repeats are counted as
    /// duplicates; CPUs past `limit` (at most [`MAX_CPUS`]) as over the limit.
    pub fn push(&mut self, id: u64, limit: usize) {
        if self.ids[..self.len].contains(&id) {
            if id != self.ids[0] {
                self.duplicates += 1;
            }
            return;
        }
        if self.len >= limit.clamp(1, MAX_CPUS) {
            self.over_limit += 1;
            return;
        }
        self.ids[self.len] = id;
        self.len += 1;
    }

    /// How many CPUs the table holds (at least the boot CPU).
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Never: the boot CPU is always there.
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// The hardware ID of logical CPU `cpu`.
    pub fn id(&self, cpu: usize) -> Option<u64> {
        self.ids[..self.len].get(cpu).copied()
    }

    /// The logical index of hardware ID `id`.
    pub fn index_of(&self, id: u64) -> Option<usize> {
        self.ids[..self.len].iter().position(|&i| i == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_cpu_first_and_limits() {
        let mut t = CpuTable::new(3);
        for id in [0, 1, 2, 3, 1, 4] {
            t.push(id, 4);
        }
        assert_eq!(t.len(), 4);
        assert_eq!(
            (t.id(0), t.id(1), t.id(2), t.id(3), t.id(4)),
            (Some(3), Some(0), Some(1), Some(2), None)
        );
        assert_eq!((t.duplicates, t.over_limit), (1, 1));
        assert_eq!(t.index_of(2), Some(3));
        assert_eq!(t.index_of(4), None);
        // A limit above MAX_CPUS is MAX_CPUS.
        let mut t = CpuTable::new(0);
        for id in 1..100 {
            t.push(id, 1000);
        }
        assert_eq!((t.len(), t.over_limit), (MAX_CPUS, 100 - MAX_CPUS));
    }
}
