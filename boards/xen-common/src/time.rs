//! The Xen clock (`xen.h`, `vcpu_time_info`): the pvclock, whose layout, consistent read and
//! TSC scaling KVM's kvmclock shares — they live in `rhea-pvtime`, re-exported here under the
//! names the Xen boards use.

pub use rhea_pvtime::clock::{FLAG_TSC_STABLE, Snapshot, scale, scale_for};
