//! The shared-info page and `vcpu_info` (`xen.h`): memory Xen and the guest both write, so
//! every field the guest reads or writes concurrently is an atomic. The guest provides the
//! page (a page-aligned static in the image, handed to Xen with `XENMEM_add_to_physmap`).
//!
//! Layouts differ by architecture: on x86_64 a `vcpu_info` carries `arch_vcpu_info` (CR2 and a
//! pad word) and the page holds 32 of them (`XEN_LEGACY_MAX_VCPUS`); on arm64 the arch part is
//! empty and the page holds one — further vCPUs register theirs (`VCPUOP_register_vcpu_info`).
//!
//! The atomics come from `crate::sync` (loom's under `--cfg loom`, where the layout checks are
//! off — loom's atomics are larger — and the unused tail of the page is left out).

use crate::sync::{AtomicU8, AtomicU64};

/// `vcpu_time_info`: the Xen clock's parameters for one vCPU — the pvclock layout KVM uses
/// too, so it lives in `rhea-pvtime`.
pub use rhea_pvtime::clock::TimeInfo as VcpuTimeInfo;

/// `vcpu_info`: one vCPU's upcall flags, its word selector into the pending bitmap, and its
/// clock.
#[repr(C)]
#[derive(Debug, Default)]
pub struct VcpuInfo {
    /// Set by Xen when an unmasked port of this vCPU became pending; the guest clears it.
    pub upcall_pending: AtomicU8,
    /// PV upcall mask (HVM guests use the interrupt flag instead; kept clear).
    pub upcall_mask: AtomicU8,
    /// Padding.
    pub pad: [AtomicU8; 6],
    /// Bit `w` set: word `w` of the pending bitmap has a port of this vCPU pending.
    pub pending_sel: AtomicU64,
    /// `arch_vcpu_info` (x86: CR2 and a pad word; arm64: empty).
    #[cfg(not(target_arch = "aarch64"))]
    pub arch: [AtomicU64; 2],
    /// The clock.
    pub time: VcpuTimeInfo,
}

/// `vcpu_info`s in the shared-info page (`XEN_LEGACY_MAX_VCPUS`).
#[cfg(all(not(target_arch = "aarch64"), not(loom)))]
pub const LEGACY_VCPUS: usize = 32;
/// `vcpu_info`s in the shared-info page (`XEN_LEGACY_MAX_VCPUS`).
#[cfg(all(target_arch = "aarch64", not(loom)))]
pub const LEGACY_VCPUS: usize = 1;
/// Under loom: the models' vCPUs (see [`EVTCHN_WORDS`]).
#[cfg(loom)]
pub const LEGACY_VCPUS: usize = 4;

/// Words of the 2-level pending and mask bitmaps (`sizeof(xen_ulong_t) * 8` of 64 bits: 4,096
/// ports).
#[cfg(not(loom))]
pub const EVTCHN_WORDS: usize = 64;
/// Under loom, two words (128 ports), and fewer vCPUs everywhere: loom builds every atomic of
/// the page and of the tables again in each execution it explores (tens of thousands per
/// model), and the models use a few low ports of a few vCPUs. The logic is the same at any
/// size.
#[cfg(loom)]
pub const EVTCHN_WORDS: usize = 2;
/// Ports of the 2-level ABI.
pub const NR_PORTS: usize = EVTCHN_WORDS * 64;

/// The shared-info page, up to the event-channel bitmaps (the wall clock and arch part that
/// follow are not used), padded to a page.
#[repr(C, align(4096))]
#[derive(Debug)]
pub struct SharedInfo {
    /// The `vcpu_info`s of the first vCPUs.
    pub vcpu_info: [VcpuInfo; LEGACY_VCPUS],
    /// Pending ports, one bit each; Xen sets, the guest clears.
    pub evtchn_pending: [AtomicU64; EVTCHN_WORDS],
    /// Masked ports; the guest sets and clears.
    pub evtchn_mask: [AtomicU64; EVTCHN_WORDS],
    /// The rest of the page (wall clock, arch part).
    #[cfg(not(loom))]
    pub rest: [AtomicU8; 4096 - SHARED_INFO_USED],
}

#[cfg(not(loom))]
const SHARED_INFO_USED: usize = LEGACY_VCPUS * size_of::<VcpuInfo>() + 2 * EVTCHN_WORDS * 8;

impl SharedInfo {
    /// A zeroed page (all ports unmasked, nothing pending: Xen fills it in once mapped).
    #[allow(
        clippy::new_without_default,
        reason = "a page Xen shares; zero is its only value"
    )]
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            vcpu_info: [const { VcpuInfo::zero() }; LEGACY_VCPUS],
            evtchn_pending: [const { AtomicU64::new(0) }; EVTCHN_WORDS],
            evtchn_mask: [const { AtomicU64::new(0) }; EVTCHN_WORDS],
            rest: [const { AtomicU8::new(0) }; 4096 - SHARED_INFO_USED],
        }
    }

    /// A zeroed page, for the model (loom's atomics have no `const` constructor).
    #[allow(
        clippy::new_without_default,
        reason = "a page Xen shares; zero is its only value"
    )]
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            vcpu_info: core::array::from_fn(|_| VcpuInfo::zero()),
            evtchn_pending: core::array::from_fn(|_| AtomicU64::new(0)),
            evtchn_mask: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// `vcpu_info`s of the guest's own page, one per vCPU, each registered with
/// `VCPUOP_register_vcpu_info` (which lifts the shared page's limit and — Xen forcing a clock
/// update on registration — makes `vcpu_time_info` valid at once; the shared page's copy is
/// only refreshed at Xen's next calibration, up to a second later).
#[repr(C, align(4096))]
#[derive(Debug)]
pub struct VcpuInfoPage(pub [VcpuInfo; crate::evtchn::MAX_VCPUS]);

impl VcpuInfoPage {
    /// A zeroed page.
    #[allow(clippy::new_without_default, reason = "a static's constructor")]
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self([const { VcpuInfo::zero() }; crate::evtchn::MAX_VCPUS])
    }
}

impl VcpuInfo {
    /// All zero.
    #[cfg(not(loom))]
    pub const fn zero() -> Self {
        VcpuInfo {
            upcall_pending: AtomicU8::new(0),
            upcall_mask: AtomicU8::new(0),
            pad: [const { AtomicU8::new(0) }; 6],
            pending_sel: AtomicU64::new(0),
            #[cfg(not(target_arch = "aarch64"))]
            arch: [const { AtomicU64::new(0) }; 2],
            time: VcpuTimeInfo::zero(),
        }
    }

    /// All zero (loom's atomics have no `const` constructor).
    #[cfg(loom)]
    pub fn zero() -> Self {
        VcpuInfo {
            upcall_pending: AtomicU8::new(0),
            upcall_mask: AtomicU8::new(0),
            pad: core::array::from_fn(|_| AtomicU8::new(0)),
            pending_sel: AtomicU64::new(0),
            #[cfg(not(target_arch = "aarch64"))]
            arch: core::array::from_fn(|_| AtomicU64::new(0)),
            time: VcpuTimeInfo::zero(),
        }
    }
}

// The layouts Xen expects (checked in every real build; loom's atomics are larger).
#[cfg(not(loom))]
const _: () = assert!(size_of::<VcpuInfoPage>() <= 4096);
#[cfg(not(loom))]
#[cfg(all(not(target_arch = "aarch64"), not(loom)))]
const _: () = assert!(size_of::<VcpuInfo>() == 64);
#[cfg(all(target_arch = "aarch64", not(loom)))]
const _: () = assert!(size_of::<VcpuInfo>() == 48);
#[cfg(not(loom))]
const _: () = assert!(size_of::<SharedInfo>() == 4096);
#[cfg(all(not(target_arch = "aarch64"), not(loom)))]
const _: () = assert!(core::mem::offset_of!(SharedInfo, evtchn_pending) == 2048);
#[cfg(all(not(target_arch = "aarch64"), not(loom)))]
const _: () = assert!(core::mem::offset_of!(SharedInfo, evtchn_mask) == 2560);
// arm64 (`arch-arm.h`): one 48-byte `vcpu_info`, then the 64-bit-word bitmaps.
#[cfg(all(target_arch = "aarch64", not(loom)))]
const _: () = assert!(core::mem::offset_of!(SharedInfo, evtchn_pending) == 48);
#[cfg(all(target_arch = "aarch64", not(loom)))]
const _: () = assert!(core::mem::offset_of!(SharedInfo, evtchn_mask) == 560);
