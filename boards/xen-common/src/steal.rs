//! Steal time on Xen: each vCPU's runstate area (`vcpu_runstate_info`, layout and consistent
//! read in `rhea-pvtime`), registered by the vCPU itself with
//! `VCPUOP_register_runstate_memory_area` (the board makes the call), and read by any CPU.
//! Stolen is the time in the *runnable* and *offline* states since registration (a vCPU not
//! yet brought up was offline: that is not the kernel's loss, so the reading at registration
//! is the baseline).

use crate::evtchn::MAX_VCPUS;
use core::sync::atomic::{AtomicBool, Ordering};
use rhea_pvtime::steal::Baseline;
pub use rhea_pvtime::steal::XenRunstate;

/// Reads bounded: Xen rewrites an area for a few stores at a time.
const READ_TRIES: usize = 1_000;

/// The vCPUs' runstate areas and their baselines.
#[derive(Debug)]
pub struct RunstateAreas {
    areas: [XenRunstate; MAX_VCPUS],
    base: Baseline<MAX_VCPUS>,
    /// Some vCPU registered (a quick "no" for the context switch otherwise).
    any: AtomicBool,
}

impl RunstateAreas {
    /// No area registered.
    pub const fn new() -> Self {
        Self {
            areas: [const { XenRunstate::zero() }; MAX_VCPUS],
            base: Baseline::new(),
            any: AtomicBool::new(false),
        }
    }

    /// vCPU `cpu`'s area, to name to Xen (`None` beyond the vCPUs tracked).
    pub fn area(&self, cpu: usize) -> Option<&XenRunstate> {
        self.areas.get(cpu)
    }

    /// Records the outcome of vCPU `cpu`'s registration: on success (`rc == 0`) its reading
    /// now becomes its baseline and its steal is reported from here on. Returns whether it
    /// registered.
    pub fn registered(&self, cpu: usize, rc: i64) -> bool {
        let Some(area) = self.areas.get(cpu) else {
            return false;
        };
        if rc != 0 {
            return false;
        }
        self.base
            .register(cpu, area.stolen(READ_TRIES).unwrap_or(0));
        self.any.store(true, Ordering::Release);
        true
    }

    /// Nanoseconds Xen has kept vCPU `cpu` runnable-but-not-running or offline since it
    /// registered; `None` if it did not (or the area stayed mid-update).
    #[inline]
    pub fn stolen_ns(&self, cpu: usize) -> Option<u64> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let reading = self.areas.get(cpu)?.stolen(READ_TRIES)?;
        self.base.since(cpu, reading)
    }
}

impl Default for RunstateAreas {
    fn default() -> Self {
        Self::new()
    }
}

/// The areas of this domain's vCPUs (statics of the image: identity-mapped, so a vCPU names
/// its area by its address).
pub static RUNSTATE: RunstateAreas = RunstateAreas::new();

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use rhea_pvtime::steal::runstate;

    #[test]
    fn steal_counts_from_a_successful_registration() {
        let r = RunstateAreas::new();
        assert_eq!(r.stolen_ns(1), None, "nothing registered");
        let area = r.area(1).unwrap();
        // Offline until brought up: 5 s that are not the kernel's loss.
        area.time[runstate::OFFLINE].store(5_000_000_000, Ordering::SeqCst);
        assert!(
            !r.registered(1, -22),
            "a refused registration counts nothing"
        );
        assert_eq!(r.stolen_ns(1), None);
        assert!(r.registered(1, 0));
        assert_eq!(r.stolen_ns(1), Some(0));
        area.time[runstate::RUNNABLE].store(300, Ordering::SeqCst);
        area.time[runstate::RUNNING].store(1_000_000, Ordering::SeqCst);
        assert_eq!(r.stolen_ns(1), Some(300));
        assert_eq!(r.stolen_ns(0), None, "vCPU 0 never registered");
        assert!(!r.registered(MAX_VCPUS, 0), "beyond the table: refused");
        assert!(r.area(MAX_VCPUS).is_none());
    }
}
