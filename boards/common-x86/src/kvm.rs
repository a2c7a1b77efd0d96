//! KVM's paravirtual time on x86: **kvmclock** and **steal time**, the one place that knows
//! their CPUID bits and MSRs (Linux's `arch/x86/include/uapi/asm/kvm_para.h`, read to learn
//! the interface).
//!
//! - **kvmclock**: each vCPU names a [`TimeInfo`] (the pvclock layout Xen uses too, from
//!   `rhea-pvtime`) in `MSR_KVM_SYSTEM_TIME_NEW`; KVM fills it before the `wrmsr` returns and
//!   keeps it current. Its 32.32 scaling *is* the TSC frequency KVM uses, so the kernel's clock
//!   needs no calibration loop on KVM: the TSC scaled by kvmclock's own factor. When KVM sets
//!   the stable bit ([`rhea_pvtime::clock::FLAG_TSC_STABLE`], offered with
//!   [`KvmFeatures::stable_bit`]) every vCPU's snapshot is the same function of the TSC, so
//!   reading the TSC directly *is* reading kvmclock, on any CPU; the boot log says whether it
//!   was set.
//! - **steal time**: each vCPU names a 64-byte [`KvmStealTime`] in `MSR_KVM_STEAL_TIME`; KVM
//!   adds to it the time the vCPU was runnable on the host but not run. The same record's
//!   `preempted` byte says whether the vCPU runs now: a TLB shootdown leaves a preempted
//!   vCPU's flush to KVM (`KVM_FEATURE_PV_TLB_FLUSH`, [`defer_tlb_flush`]) instead of
//!   interrupting it and waiting until the host runs it again.
//!
//! Host-tested: the feature bits and the MSR values (alignment, the enable bit). On the
//! machine: the per-CPU records (statics of the image, identity-mapped) and their
//! registration, on each CPU by itself.

use rhea_pvtime::steal::KvmStealTime;

/// `MSR_KVM_SYSTEM_TIME_NEW`: the guest-physical address of this vCPU's kvmclock record, bit 0
/// enabling it.
pub const MSR_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
/// `MSR_KVM_STEAL_TIME`: the guest-physical address of this vCPU's steal-time record (64-byte
/// aligned), bit 0 enabling it.
pub const MSR_STEAL_TIME: u32 = 0x4b56_4d03;

/// KVM's paravirtual feature bits (CPUID 0x40000001 EAX).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct KvmFeatures(pub u32);

impl KvmFeatures {
    /// `KVM_FEATURE_CLOCKSOURCE2`: kvmclock at [`MSR_SYSTEM_TIME_NEW`].
    pub const CLOCKSOURCE2: u32 = 1 << 3;
    /// `KVM_FEATURE_STEAL_TIME`: steal time at [`MSR_STEAL_TIME`].
    pub const STEAL_TIME: u32 = 1 << 5;
    /// `KVM_FEATURE_PV_TLB_FLUSH`: a preempted vCPU's TLB flush may be left to KVM (through
    /// its steal-time record's `preempted` byte).
    pub const PV_TLB_FLUSH: u32 = 1 << 9;
    /// `KVM_FEATURE_CLOCKSOURCE_STABLE_BIT`: KVM may set the pvclock's stable flag.
    pub const CLOCKSOURCE_STABLE_BIT: u32 = 1 << 24;

    /// kvmclock is offered.
    pub fn clock(self) -> bool {
        self.0 & Self::CLOCKSOURCE2 != 0
    }

    /// Steal time is offered.
    pub fn steal(self) -> bool {
        self.0 & Self::STEAL_TIME != 0
    }

    /// TLB flushes of preempted vCPUs may be left to KVM (needs steal time).
    pub fn pv_tlb_flush(self) -> bool {
        self.0 & Self::PV_TLB_FLUSH != 0 && self.steal()
    }

    /// KVM may declare the TSC stable across vCPUs.
    pub fn stable_bit(self) -> bool {
        self.0 & Self::CLOCKSOURCE_STABLE_BIT != 0
    }
}

/// Why a record cannot be named in its MSR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrValueError {
    /// Address 0 (the MSR would read as "disabled at 0").
    Null,
    /// Not aligned as KVM requires (the low bits are flags).
    Misaligned {
        /// The address.
        addr: u64,
        /// The alignment required.
        align: u64,
    },
    /// The record would cross a page boundary (KVM maps one page).
    CrossesPage {
        /// The address.
        addr: u64,
    },
}

/// The kvmclock MSR value naming a 32-byte record at `addr`: 4-byte aligned (KVM's own
/// requirement is that it not cross a page; the low bits carry the enable flag), enabled.
pub fn clock_msr_value(addr: u64) -> Result<u64, MsrValueError> {
    enable_value(addr, 4, 32)
}

/// The steal-time MSR value naming a [`KvmStealTime`] at `addr` (64-byte aligned), enabled.
pub fn steal_msr_value(addr: u64) -> Result<u64, MsrValueError> {
    enable_value(addr, 64, size_of::<KvmStealTime>() as u64)
}

fn enable_value(addr: u64, align: u64, len: u64) -> Result<u64, MsrValueError> {
    if addr == 0 {
        return Err(MsrValueError::Null);
    }
    if !addr.is_multiple_of(align) {
        return Err(MsrValueError::Misaligned { addr, align });
    }
    if addr / 4096 != (addr + len - 1) / 4096 {
        return Err(MsrValueError::CrossesPage { addr });
    }
    Ok(addr | 1)
}

#[cfg(target_os = "none")]
pub use machine::{Registered, defer_tlb_flush, register_this_cpu, stolen_ns};

#[cfg(target_os = "none")]
#[allow(unsafe_code, reason = "the two KVM MSR writes; each has a SAFETY note")]
mod machine {
    use super::{KvmFeatures, MSR_STEAL_TIME, MSR_SYSTEM_TIME_NEW, clock_msr_value};
    use crate::smp::MAX_CPUS;
    use core::sync::atomic::{AtomicBool, Ordering};
    use rhea_pvtime::clock::{Snapshot, TimeInfo};
    use rhea_pvtime::steal::{Baseline, KvmStealTime};

    /// One vCPU's kvmclock record, on a cache line of its own.
    #[repr(C, align(64))]
    struct ClockSlot(TimeInfo);

    /// Per CPU: the kvmclock records KVM writes (identity-mapped statics: their address is
    /// their guest-physical address).
    static CLOCKS: [ClockSlot; MAX_CPUS] = [const { ClockSlot(TimeInfo::zero()) }; MAX_CPUS];
    /// Per CPU: the steal-time records KVM writes.
    static STEAL: [KvmStealTime; MAX_CPUS] = [const { KvmStealTime::zero() }; MAX_CPUS];
    /// Per CPU: its steal reading at registration.
    static STEAL_BASE: Baseline<MAX_CPUS> = Baseline::new();
    /// Whether the boot CPU found steal time on offer (then every CPU registers).
    static STEAL_ON: AtomicBool = AtomicBool::new(false);
    /// Whether KVM takes TLB flushes of preempted vCPUs (`KVM_FEATURE_PV_TLB_FLUSH`).
    static PV_FLUSH: AtomicBool = AtomicBool::new(false);

    /// Reads bounded: KVM holds a version odd only for the few stores of an update.
    const READ_TRIES: usize = 1_000;

    /// What one CPU's registration gave.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Registered {
        /// kvmclock's snapshot, if kvmclock is offered and KVM filled the record.
        pub clock: Option<Snapshot>,
        /// Steal time is counted for this CPU.
        pub steal: bool,
    }

    /// Names this CPU's kvmclock and steal-time records to KVM, where `features` offers them.
    /// Call on CPU `cpu` itself (MSRs are per vCPU), once, interrupts disabled.
    pub fn register_this_cpu(cpu: usize, features: KvmFeatures) -> Registered {
        let mut out = Registered::default();
        let (Some(clock), Some(steal)) = (CLOCKS.get(cpu), STEAL.get(cpu)) else {
            return out;
        };
        if features.clock()
            && let Ok(value) = clock_msr_value(&clock.0 as *const TimeInfo as u64)
        {
            // SAFETY: KVM offers MSR_KVM_SYSTEM_TIME_NEW (CPUID 0x40000001 says so); the value
            // names this CPU's own record, a static of the identity-mapped image (its address
            // is its guest-physical address) that lives as long as the kernel and that the
            // kernel only reads (atomics).
            unsafe { rhea_arch::wrmsr(MSR_SYSTEM_TIME_NEW, value) };
            out.clock = Snapshot::read(&clock.0, READ_TRIES).filter(Snapshot::is_valid);
        }
        if features.steal()
            && let Ok(value) = super::steal_msr_value(steal as *const KvmStealTime as u64)
        {
            // SAFETY: as above, for MSR_KVM_STEAL_TIME and this CPU's 64-byte-aligned
            // steal-time record.
            unsafe { rhea_arch::wrmsr(MSR_STEAL_TIME, value) };
            STEAL_BASE.register(cpu, steal.read(READ_TRIES).unwrap_or(0));
            STEAL_ON.store(true, Ordering::Relaxed);
            PV_FLUSH.store(features.pv_tlb_flush(), Ordering::Relaxed);
            out.steal = true;
        }
        out
    }

    /// If CPU `cpu` is preempted by KVM now, leaves its TLB flush to KVM (done before it next
    /// runs) and returns `true`; `false` where KVM does not offer it or the CPU runs.
    #[inline]
    pub fn defer_tlb_flush(cpu: usize) -> bool {
        PV_FLUSH.load(Ordering::Relaxed)
            && STEAL_BASE.registered(cpu)
            && STEAL
                .get(cpu)
                .is_some_and(KvmStealTime::try_defer_tlb_flush)
    }

    /// Nanoseconds KVM has kept CPU `cpu` from running since it registered; `None` without
    /// steal time (not KVM, not offered, not registered) or if the record stayed mid-update.
    #[inline]
    pub fn stolen_ns(cpu: usize) -> Option<u64> {
        if !STEAL_ON.load(Ordering::Relaxed) {
            return None;
        }
        let reading = STEAL.get(cpu)?.read(READ_TRIES)?;
        STEAL_BASE.since(cpu, reading)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_bits_are_kvms() {
        // What QEMU's `-cpu host` under KVM offers by default (kvmclock, nopiodelay, mmu,
        // clocksource2, async-pf, steal time, pv-eoi, ..., stable bit).
        let f = KvmFeatures(0x0100_0eff | KvmFeatures::CLOCKSOURCE_STABLE_BIT);
        assert!(f.clock() && f.steal() && f.stable_bit());
        let none = KvmFeatures(0);
        assert!(!none.clock() && !none.steal() && !none.stable_bit());
        // Only the old clock (bit 0, MSR 0x12): not used.
        assert!(!KvmFeatures(1).clock());
    }

    #[test]
    fn msr_values_name_the_record_and_enable_it() {
        assert_eq!(clock_msr_value(0x10_0040), Ok(0x10_0041));
        assert_eq!(steal_msr_value(0x10_0040), Ok(0x10_0041));
        assert_eq!(clock_msr_value(0), Err(MsrValueError::Null));
        assert_eq!(
            steal_msr_value(0x10_0020),
            Err(MsrValueError::Misaligned {
                addr: 0x10_0020,
                align: 64
            })
        );
        assert_eq!(
            clock_msr_value(0x10_0ff0),
            Err(MsrValueError::CrossesPage { addr: 0x10_0ff0 })
        );
        // The last 32 bytes of a page are fine.
        assert_eq!(clock_msr_value(0x10_0fe0), Ok(0x10_0fe1));
    }
}
