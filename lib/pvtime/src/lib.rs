//! # `rhea-pvtime` — paravirtual time, as KVM and Xen publish it
//!
//! A hypervisor tells its guest two things about time through memory it writes concurrently
//! with the guest:
//! - [`clock`]: the **pvclock** — per vCPU, a snapshot of the host's system time at a TSC
//!   value and the 32.32 scaling from TSC ticks to nanoseconds. Xen's `vcpu_time_info` and
//!   KVM's `pvclock_vcpu_time_info` (kvmclock) are the same 32-byte layout with the same
//!   version protocol, so one type and one reader serve both (`xen-x86_64` and the KVM side of
//!   `common-x86`). The scaling alone gives the TSC's frequency without any calibration loop.
//! - [`steal`]: **steal time** — how long a vCPU was runnable but not run (the host ran
//!   something else). KVM keeps one counter per vCPU (`kvm_steal_time`); Xen keeps the time
//!   spent in each run state (`vcpu_runstate_info`), of which *runnable* and *offline* are
//!   stolen. [`steal::Baseline`] turns either into "stolen since this CPU registered".
//!
//! Layouts are checked at compile time; every read is bounded (a hypervisor that never ends
//! an update yields `None`, not a hang). Nothing here touches hardware: the boards place the
//! records (statics in the image) and tell the hypervisor where they are.
//!
//! Interfaces read to learn them (written here): Linux's `include/uapi/asm/kvm_para.h` and
//! `pvclock-abi.h`, Xen's `public/xen.h` and `public/vcpu.h`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod clock;
pub mod steal;
