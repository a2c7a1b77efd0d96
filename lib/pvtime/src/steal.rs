//! Steal time: how long the hypervisor kept a vCPU from running while it was runnable.
//!
//! - **KVM** ([`KvmStealTime`]): a 64-byte record per vCPU, named (with bit 0 set: enabled) in
//!   `MSR_KVM_STEAL_TIME`; KVM adds the vCPU thread's run-queue delay to `steal` whenever it
//!   enters the vCPU, under a version counter odd while it writes.
//! - **Xen** ([`XenRunstate`]): `vcpu_runstate_info`, registered per vCPU with
//!   `VCPUOP_register_runstate_memory_area`; the nanoseconds spent in each run state. Stolen is
//!   *runnable* (wanted a CPU, did not get one) plus *offline* (taken down by the host). Xen
//!   has no version counter: a reader copies the record between two reads of
//!   `state_entry_time` and retries if it changed or has [`RUNSTATE_UPDATE`] set (set by Xen
//!   while it writes, if the guest enabled `VMASST_TYPE_runstate_update_flag`).
//!
//! Both count from before the guest looked; [`Baseline`] keeps each CPU's reading at
//! registration so that the kernel reports steal since it started counting.

use core::sync::atomic::{AtomicI32, AtomicU8, AtomicU32, AtomicU64, Ordering};

/// `kvm_steal_time`. KVM requires 64-byte alignment (the MSR's low 6 bits are flags).
#[repr(C, align(64))]
#[derive(Debug)]
pub struct KvmStealTime {
    /// Nanoseconds stolen since the record was registered (KVM's running sum).
    pub steal: AtomicU64,
    /// Odd while KVM updates the record.
    pub version: AtomicU32,
    /// Flags (none defined for the guest to read).
    pub flags: AtomicU32,
    /// Set by KVM while the vCPU is preempted (`KVM_VCPU_PREEMPTED`).
    pub preempted: AtomicU8,
    /// Padding.
    pub pad8: [AtomicU8; 3],
    /// Padding to 64 bytes.
    pub pad: [AtomicU32; 11],
}

const _: () = assert!(size_of::<KvmStealTime>() == 64);

impl KvmStealTime {
    /// All zero.
    pub const fn zero() -> Self {
        Self {
            steal: AtomicU64::new(0),
            version: AtomicU32::new(0),
            flags: AtomicU32::new(0),
            preempted: AtomicU8::new(0),
            pad8: [const { AtomicU8::new(0) }; 3],
            pad: [const { AtomicU32::new(0) }; 11],
        }
    }

    /// The stolen nanoseconds, read consistently (an even version unchanged across the read);
    /// `None` if every one of `max_tries` attempts met an update.
    pub fn read(&self, max_tries: usize) -> Option<u64> {
        for _ in 0..max_tries {
            let v1 = self.version.load(Ordering::Acquire);
            if v1 & 1 != 0 {
                core::hint::spin_loop();
                continue;
            }
            let steal = self.steal.load(Ordering::Acquire);
            if self.version.load(Ordering::Acquire) == v1 {
                return Some(steal);
            }
        }
        None
    }
}

impl KvmStealTime {
    /// `preempted` bit: KVM has descheduled the vCPU (set as it leaves, cleared as it enters).
    pub const PREEMPTED: u8 = 1 << 0;
    /// `preempted` bit: flush the vCPU's TLB before it runs again (set by another vCPU).
    pub const FLUSH_TLB: u8 = 1 << 1;

    /// If the vCPU is preempted now, asks KVM to flush its TLB before it next runs (what
    /// `KVM_FEATURE_PV_TLB_FLUSH` offers) and returns `true`: the caller need not interrupt it.
    /// `false` if it runs (or is entering: KVM clears the byte as it enters, and the
    /// compare-and-swap then fails) — send the IPI.
    pub fn try_defer_tlb_flush(&self) -> bool {
        let state = self.preempted.load(Ordering::Acquire);
        state & Self::PREEMPTED != 0
            && self
                .preempted
                .compare_exchange(
                    state,
                    state | Self::FLUSH_TLB,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }
}

/// Set in `state_entry_time` while Xen updates the runstate record (`XEN_RUNSTATE_UPDATE`).
pub const RUNSTATE_UPDATE: u64 = 1 << 63;

/// Xen's run states, the indices of [`XenRunstate::time`].
pub mod runstate {
    /// Running on a physical CPU.
    pub const RUNNING: usize = 0;
    /// Runnable, but not running: stolen.
    pub const RUNNABLE: usize = 1;
    /// Blocked (waiting for an event): the guest's own idle time.
    pub const BLOCKED: usize = 2;
    /// Taken offline (by the guest or the host); counted as stolen, as Linux does.
    pub const OFFLINE: usize = 3;
}

/// `vcpu_runstate_info` (the same layout on x86_64 and arm64: an `int`, padding, then 64-bit
/// fields).
#[repr(C)]
#[derive(Debug)]
pub struct XenRunstate {
    /// The current run state.
    pub state: AtomicI32,
    /// Padding (the `uint64_t` that follows is 8-aligned).
    pub pad: AtomicU32,
    /// Xen's system time when the current state began, with [`RUNSTATE_UPDATE`] while Xen
    /// writes.
    pub state_entry_time: AtomicU64,
    /// Nanoseconds spent in each state (indexed by [`runstate`]).
    pub time: [AtomicU64; 4],
}

const _: () = assert!(size_of::<XenRunstate>() == 48);

impl XenRunstate {
    /// All zero.
    pub const fn zero() -> Self {
        Self {
            state: AtomicI32::new(0),
            pad: AtomicU32::new(0),
            state_entry_time: AtomicU64::new(0),
            time: [const { AtomicU64::new(0) }; 4],
        }
    }

    /// The time in each state, read consistently; `None` if every one of `max_tries`
    /// attempts met an update.
    pub fn read(&self, max_tries: usize) -> Option<[u64; 4]> {
        for _ in 0..max_tries {
            let entry = self.state_entry_time.load(Ordering::Acquire);
            if entry & RUNSTATE_UPDATE != 0 {
                core::hint::spin_loop();
                continue;
            }
            let times = core::array::from_fn(|i| self.time[i].load(Ordering::Acquire));
            if self.state_entry_time.load(Ordering::Acquire) == entry {
                return Some(times);
            }
        }
        None
    }

    /// Nanoseconds stolen: runnable plus offline.
    pub fn stolen(&self, max_tries: usize) -> Option<u64> {
        self.read(max_tries)
            .map(|t| t[runstate::RUNNABLE].saturating_add(t[runstate::OFFLINE]))
    }
}

/// Per CPU, the steal reading when the CPU registered its record, so that what is reported is
/// steal since then (Xen's offline time of a vCPU not yet brought up is not the kernel's
/// loss). `N` CPUs; a CPU that never registered reports nothing.
#[derive(Debug)]
pub struct Baseline<const N: usize> {
    /// The reading at registration, plus one (0: not registered).
    base: [AtomicU64; N],
}

impl<const N: usize> Baseline<N> {
    /// No CPU registered.
    pub const fn new() -> Self {
        Self {
            base: [const { AtomicU64::new(0) }; N],
        }
    }

    /// Records `cpu`'s reading at registration (ignored for a CPU out of range).
    pub fn register(&self, cpu: usize, reading: u64) {
        if let Some(b) = self.base.get(cpu) {
            b.store(reading.saturating_add(1), Ordering::Release);
        }
    }

    /// Steal on `cpu` since it registered, given its current `reading`; `None` if it has not
    /// registered. A reading below the baseline (a hypervisor that reset its counter) counts
    /// as none stolen, never as a huge number.
    pub fn since(&self, cpu: usize, reading: u64) -> Option<u64> {
        let b = self.base.get(cpu)?.load(Ordering::Acquire);
        (b != 0).then(|| reading.saturating_sub(b - 1))
    }

    /// Whether `cpu` registered.
    pub fn registered(&self, cpu: usize) -> bool {
        self.base
            .get(cpu)
            .is_some_and(|b| b.load(Ordering::Acquire) != 0)
    }
}

impl<const N: usize> Default for Baseline<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_steal_is_read_between_even_equal_versions() {
        let st = KvmStealTime::zero();
        assert_eq!(st.read(4), Some(0));
        st.version.store(7, Ordering::SeqCst); // KVM mid-update
        st.steal.store(1_234, Ordering::SeqCst);
        assert_eq!(st.read(100), None, "an odd version is never read");
        st.version.store(8, Ordering::SeqCst);
        assert_eq!(st.read(1), Some(1_234));
        assert_eq!(align_of::<KvmStealTime>(), 64);
    }

    #[test]
    fn a_tlb_flush_is_deferred_only_to_a_preempted_vcpu() {
        let st = KvmStealTime::zero();
        assert!(!st.try_defer_tlb_flush(), "a running vCPU is interrupted");
        assert_eq!(st.preempted.load(Ordering::SeqCst), 0);
        st.preempted
            .store(KvmStealTime::PREEMPTED, Ordering::SeqCst);
        assert!(st.try_defer_tlb_flush());
        assert_eq!(
            st.preempted.load(Ordering::SeqCst),
            KvmStealTime::PREEMPTED | KvmStealTime::FLUSH_TLB
        );
        // Asked twice: still deferred, the flag stays.
        assert!(st.try_defer_tlb_flush());
        // KVM enters the vCPU (clears the byte, flushing): the next shootdown interrupts it.
        st.preempted.store(0, Ordering::SeqCst);
        assert!(!st.try_defer_tlb_flush());
    }

    #[test]
    fn xen_runstate_counts_runnable_and_offline_as_stolen() {
        let rs = XenRunstate::zero();
        rs.time[runstate::RUNNING].store(1_000, Ordering::SeqCst);
        rs.time[runstate::RUNNABLE].store(30, Ordering::SeqCst);
        rs.time[runstate::BLOCKED].store(500, Ordering::SeqCst);
        rs.time[runstate::OFFLINE].store(12, Ordering::SeqCst);
        assert_eq!(rs.stolen(2), Some(42));
        rs.state_entry_time
            .store(RUNSTATE_UPDATE | 99, Ordering::SeqCst);
        assert_eq!(rs.stolen(50), None, "a record mid-update is never read");
        rs.state_entry_time.store(99, Ordering::SeqCst);
        assert_eq!(rs.read(1), Some([1_000, 30, 500, 12]));
    }

    #[test]
    fn steal_counts_from_registration() {
        let b: Baseline<2> = Baseline::new();
        assert_eq!(b.since(0, 500), None);
        assert!(!b.registered(0));
        b.register(0, 400);
        assert!(b.registered(0));
        assert_eq!(b.since(0, 500), Some(100));
        // A counter that went backwards reads as nothing stolen.
        assert_eq!(b.since(0, 10), Some(0));
        // Zero is a valid baseline, distinct from "not registered".
        b.register(1, 0);
        assert_eq!(b.since(1, 7), Some(7));
        // Out of range: ignored, never a panic.
        b.register(5, 1);
        assert_eq!(b.since(5, 1), None);
    }
}
