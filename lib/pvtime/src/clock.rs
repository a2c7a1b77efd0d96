//! The pvclock: a hypervisor's system time in nanoseconds, extrapolated from a per-vCPU
//! snapshot with the TSC:
//! `system_time + ((tsc - tsc_timestamp) << tsc_shift) * tsc_to_system_mul >> 32`
//! (a right shift when `tsc_shift` is negative). The hypervisor rewrites the snapshot under a
//! version counter — odd while it writes — so a reader retries until it saw an even version
//! that did not change ([`Snapshot::read`]).
//!
//! One layout for both hypervisors: Xen's `vcpu_time_info` (in each `vcpu_info`) and KVM's
//! `pvclock_vcpu_time_info` (kvmclock: a record the guest places anywhere and names in
//! `MSR_KVM_SYSTEM_TIME_NEW`). Bit 0 of `flags` is the same on both: the TSC is stable, i.e.
//! every vCPU's snapshot describes one and the same linear function of the TSC
//! ([`FLAG_TSC_STABLE`]).

use core::sync::atomic::{AtomicI8, AtomicU8, AtomicU32, AtomicU64, Ordering};

/// `flags` bit 0 (`PVCLOCK_TSC_STABLE_BIT`, `XEN_PVCLOCK_TSC_STABLE_BIT`): the TSCs of all
/// vCPUs are synchronised and the snapshots agree, so the TSC scaled by any one of them is the
/// clock on every vCPU.
pub const FLAG_TSC_STABLE: u8 = 1 << 0;

/// `vcpu_time_info` / `pvclock_vcpu_time_info`: one vCPU's clock parameters, written by the
/// hypervisor under a version counter (odd while an update is in progress). Atomics: the
/// hypervisor writes them concurrently with the guest's reads.
#[repr(C)]
#[derive(Debug, Default)]
pub struct TimeInfo {
    /// Odd while the hypervisor updates the rest.
    pub version: AtomicU32,
    /// Padding.
    pub pad0: AtomicU32,
    /// The TSC when `system_time` was taken.
    pub tsc_timestamp: AtomicU64,
    /// The host's system time (ns since it booted) at `tsc_timestamp`.
    pub system_time: AtomicU64,
    /// TSC delta → ns multiplier (a 32.32 fraction, after `tsc_shift`).
    pub tsc_to_system_mul: AtomicU32,
    /// Shift applied to a TSC delta before the multiplication (negative: right).
    pub tsc_shift: AtomicI8,
    /// [`FLAG_TSC_STABLE`] and others.
    pub flags: AtomicU8,
    /// Padding.
    pub pad1: [AtomicU8; 2],
}

const _: () = assert!(size_of::<TimeInfo>() == 32);

impl TimeInfo {
    /// All zero (as the hypervisor first finds it).
    pub const fn zero() -> Self {
        Self {
            version: AtomicU32::new(0),
            pad0: AtomicU32::new(0),
            tsc_timestamp: AtomicU64::new(0),
            system_time: AtomicU64::new(0),
            tsc_to_system_mul: AtomicU32::new(0),
            tsc_shift: AtomicI8::new(0),
            flags: AtomicU8::new(0),
            pad1: [const { AtomicU8::new(0) }; 2],
        }
    }
}

/// A consistent copy of one vCPU's [`TimeInfo`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The TSC at `system_time`.
    pub tsc_timestamp: u64,
    /// The host's system time (ns) at `tsc_timestamp`.
    pub system_time: u64,
    /// The 32.32 multiplier.
    pub mul: u32,
    /// The pre-shift.
    pub shift: i8,
    /// The flags ([`FLAG_TSC_STABLE`]).
    pub flags: u8,
}

impl Snapshot {
    /// Whether the hypervisor says every vCPU's snapshot is the same function of the TSC.
    pub fn tsc_stable(&self) -> bool {
        self.flags & FLAG_TSC_STABLE != 0
    }

    /// Whether the snapshot holds a usable scaling (a hypervisor that has not written it yet
    /// leaves it zero).
    pub fn is_valid(&self) -> bool {
        self.mul != 0
    }

    /// Reads `info` consistently. The hypervisor holds the version odd only for the few stores of an
    /// update, so the loop ends; `max_tries` bounds it anyway (`None` when exhausted).
    pub fn read(info: &TimeInfo, max_tries: usize) -> Option<Self> {
        for _ in 0..max_tries {
            let v1 = info.version.load(Ordering::Acquire);
            if v1 & 1 != 0 {
                core::hint::spin_loop();
                continue;
            }
            let snap = Self {
                tsc_timestamp: info.tsc_timestamp.load(Ordering::Acquire),
                system_time: info.system_time.load(Ordering::Acquire),
                mul: info.tsc_to_system_mul.load(Ordering::Acquire),
                shift: info.tsc_shift.load(Ordering::Acquire),
                flags: info.flags.load(Ordering::Acquire),
            };
            if info.version.load(Ordering::Acquire) == v1 {
                return Some(snap);
            }
        }
        None
    }

    /// The host's system time at TSC value `tsc`. The difference is taken modulo 2^64 and read as
    /// signed: the guest's TSC is the host's plus an offset, so `tsc_timestamp` may lie "below zero"
    /// (seen under Xen 4.17: a snapshot at 2^64 − 75,906,764 against a guest TSC of 248
    /// million). A TSC slightly before the snapshot counts as the snapshot's own time.
    pub fn system_time_at(&self, tsc: u64) -> u64 {
        let delta = tsc.wrapping_sub(self.tsc_timestamp) as i64;
        self.system_time
            .wrapping_add(scale(delta.max(0) as u64, self.mul, self.shift))
    }

    /// TSC ticks per second implied by the scaling (0 when the snapshot is empty).
    pub fn tsc_hz(&self) -> u64 {
        if self.mul == 0 {
            return 0;
        }
        // ns = ((ticks << shift) * mul) >> 32, so ticks/s = 1e9 · 2^32 / mul, then un-shifted.
        let hz = (1_000_000_000u128 << 32) / u128::from(self.mul);
        let hz = if self.shift >= 0 {
            hz >> self.shift
        } else {
            hz << (-i32::from(self.shift))
        };
        u64::try_from(hz).unwrap_or(u64::MAX)
    }
}

/// Scales a TSC delta to nanoseconds.
pub fn scale(delta: u64, mul: u32, shift: i8) -> u64 {
    let d = if shift >= 0 {
        delta << shift.min(63)
    } else {
        delta >> (-i32::from(shift)).min(63)
    };
    ((u128::from(d) * u128::from(mul)) >> 32) as u64
}

/// The `(mul, shift)` a hypervisor would use for a TSC of `hz` (as `xen/arch/x86/time.c` derives
/// them: shift the frequency into `[2^31, 2^32)` relative to 1 GHz, then a 32.32 fraction).
/// For tests and for checking a snapshot's plausibility.
pub fn scale_for(hz: u64) -> (u32, i8) {
    let mut shift: i8 = 0;
    let mut tps = hz;
    let target = 1_000_000_000u64;
    while tps > target * 2 {
        tps >>= 1;
        shift -= 1;
    }
    while tps <= target {
        tps <<= 1;
        shift += 1;
    }
    let mul = ((u128::from(target) << 32) / u128::from(tps)) as u32;
    (mul, shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_matches_the_frequency() {
        for hz in [
            1_000_000_000u64,
            2_400_000_000,
            3_000_000_000,
            100_000_000,
            19_200_000,
        ] {
            let (mul, shift) = scale_for(hz);
            // One second of ticks is one second, within 1 ns per 10^6.
            let ns = scale(hz, mul, shift);
            assert!(ns.abs_diff(1_000_000_000) < 1_000, "{hz} Hz: {ns} ns");
            let snap = Snapshot {
                tsc_timestamp: 0,
                system_time: 0,
                mul,
                shift,
                flags: 0,
            };
            let got = snap.tsc_hz();
            assert!(
                got.abs_diff(hz) <= hz / 1_000_000 + 1,
                "{hz} Hz read back as {got}"
            );
        }
    }

    #[test]
    fn time_extrapolates_from_the_snapshot() {
        let (mul, shift) = scale_for(2_000_000_000);
        let snap = Snapshot {
            tsc_timestamp: 1_000,
            system_time: 5_000_000,
            mul,
            shift,
            flags: FLAG_TSC_STABLE,
        };
        assert!(snap.tsc_stable() && snap.is_valid());
        assert_eq!(snap.system_time_at(1_000), 5_000_000);
        assert_eq!(snap.system_time_at(3_000), 5_001_000);
        // A TSC read before the snapshot does not go back in time.
        assert_eq!(snap.system_time_at(10), 5_000_000);
        // A snapshot taken "below zero" of the guest's TSC (an offset TSC): the delta wraps.
        let below = Snapshot {
            tsc_timestamp: 0u64.wrapping_sub(1_000),
            ..snap
        };
        assert_eq!(below.system_time_at(1_000), 5_001_000);
        // Large deltas do not overflow: an hour at 2 GHz.
        let hour = snap.system_time_at(1_000 + 2_000_000_000 * 3600);
        assert!((hour - 5_000_000).abs_diff(3_600_000_000_000) < 10_000_000);
    }

    #[test]
    fn a_torn_update_is_not_read() {
        let info = TimeInfo::zero();
        info.version.store(3, Ordering::SeqCst); // mid-update
        assert_eq!(Snapshot::read(&info, 10), None);
        info.system_time.store(42, Ordering::SeqCst);
        info.tsc_to_system_mul.store(1 << 31, Ordering::SeqCst);
        info.version.store(4, Ordering::SeqCst);
        let s = Snapshot::read(&info, 10).unwrap();
        assert_eq!((s.system_time, s.mul), (42, 1 << 31));
    }
}
