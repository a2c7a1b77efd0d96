//! Xen's guest ABI: hypercall numbers, sub-operations and argument layouts (Xen 4.17's
//! `xen/include/public/`: `xen.h`, `sched.h`, `vcpu.h`, `event_channel.h`, `hvm/hvm_op.h`,
//! `hvm/params.h`, `hvm/hvm_vcpu.h`, `memory.h`). Only what Rhea uses.

/// Hypercall numbers (`xen.h`, `__HYPERVISOR_*`).
pub mod hypercall {
    /// `memory_op(cmd, arg)`.
    pub const MEMORY_OP: usize = 12;
    /// `xen_version(cmd, arg)`.
    pub const XEN_VERSION: usize = 17;
    /// `console_io(cmd, count, buffer)`.
    pub const CONSOLE_IO: usize = 18;
    /// `grant_table_op(cmd, arg, count)`.
    pub const GRANT_TABLE_OP: usize = 20;
    /// `vcpu_op(cmd, vcpu, arg)`.
    pub const VCPU_OP: usize = 24;
    /// `sched_op(cmd, arg)`.
    pub const SCHED_OP: usize = 29;
    /// `event_channel_op(cmd, arg)`.
    pub const EVENT_CHANNEL_OP: usize = 32;
    /// `hvm_op(cmd, arg)`.
    pub const HVM_OP: usize = 34;
}

/// Facts of Xen's Arm guest interface (`arch-arm.h`).
pub mod arm {
    /// `GUEST_EVTCHN_PPI`: the PPI (as a GIC INTID) Xen raises on a vCPU when one of its event
    /// channels becomes pending. A guest's devicetree names it in the `hypervisor` node when
    /// Xen writes one; Xen uses this value for every domain it builds (`arch_domain_create`).
    pub const GUEST_EVTCHN_PPI: u32 = 31;
    /// `GUEST_MAGIC_BASE`/`GUEST_MAGIC_SIZE`: where the toolstack puts a domain's "magic pages"
    /// (xenstore and console rings among them), below its RAM.
    pub const GUEST_MAGIC: core::ops::Range<u64> = 0x3900_0000..0x3a00_0000;
}

/// `XENVER_version`: returns `major << 16 | minor`.
pub const XENVER_VERSION: usize = 0;
/// `CONSOLEIO_write`.
pub const CONSOLEIO_WRITE: usize = 0;
/// `CONSOLEIO_read`: the hardware domain's share of Xen's serial input.
pub const CONSOLEIO_READ: usize = 1;
/// `VIRQ_CONSOLE`: Xen's serial input has bytes for the hardware domain.
pub const VIRQ_CONSOLE: u32 = 2;

/// The PV console ring page (`io/console.h`, `xencons_interface`): input ring, output ring,
/// then their indices (free-running `u32`s, masked by the ring sizes).
pub mod console {
    /// Offset of the input ring.
    pub const IN: usize = 0;
    /// Bytes of the input ring.
    pub const IN_SIZE: usize = 1024;
    /// Offset of the output ring.
    pub const OUT: usize = 1024;
    /// Bytes of the output ring.
    pub const OUT_SIZE: usize = 2048;
    /// Offset of `in_cons`.
    pub const IN_CONS: usize = 3072;
    /// Offset of `in_prod`.
    pub const IN_PROD: usize = 3076;
    /// Offset of `out_cons`.
    pub const OUT_CONS: usize = 3080;
    /// Offset of `out_prod`.
    pub const OUT_PROD: usize = 3084;
}

/// `SCHEDOP_*` (`sched.h`).
pub mod sched {
    /// Give up the CPU.
    pub const YIELD: usize = 0;
    /// Block until an event is pending.
    pub const BLOCK: usize = 1;
    /// Shut the domain down; the argument is a `u32` reason.
    pub const SHUTDOWN: usize = 2;
}

/// `SHUTDOWN_*` reasons (`sched.h`).
pub mod shutdown {
    /// Clean power-off.
    pub const POWEROFF: u32 = 0;
    /// Restart the domain (what the toolstack does is its `on_reboot` setting).
    pub const REBOOT: u32 = 1;
    /// The guest crashed.
    pub const CRASH: u32 = 3;
}

/// The name of a `SHUTDOWN_*` reason.
pub fn shutdown_name(reason: u32) -> &'static str {
    match reason {
        0 => "poweroff",
        1 => "reboot",
        2 => "suspend",
        3 => "crash",
        4 => "watchdog",
        5 => "soft_reset",
        _ => "unknown",
    }
}

/// `VCPUOP_*` (`vcpu.h`).
pub mod vcpu {
    /// Set a vCPU's initial register state (HVM/PVH: a `vcpu_hvm_context`).
    pub const INITIALISE: usize = 0;
    /// Start a vCPU.
    pub const UP: usize = 1;
    /// Whether a vCPU runs; `-ENOENT` for a vCPU the domain does not have.
    pub const IS_UP: usize = 3;
    /// Name a `vcpu_runstate_info` Xen keeps current for a vCPU (by the guest's virtual
    /// address; Rhea's images run identity-mapped).
    pub const REGISTER_RUNSTATE_MEMORY_AREA: usize = 5;
    /// Stop the periodic timer.
    pub const STOP_PERIODIC_TIMER: usize = 7;
    /// Arm the one-shot timer (`vcpu_set_singleshot_timer`).
    pub const SET_SINGLESHOT_TIMER: usize = 8;
    /// Cancel the one-shot timer.
    pub const STOP_SINGLESHOT_TIMER: usize = 9;
    /// Move a vCPU's `vcpu_info` out of the shared-info page.
    pub const REGISTER_VCPU_INFO: usize = 10;
}

/// `vcpu_set_singleshot_timer`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleshotTimer {
    /// The deadline on Xen's system time (ns).
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*`; 0: a deadline in the past fires at once.
    pub flags: u32,
}

/// `vcpu_register_runstate_memory_area`: the area's address (a union of handle, pointer and
/// `uint64_t`: 8 bytes on both architectures).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RegisterRunstateArea {
    /// The guest virtual address of the `vcpu_runstate_info`.
    pub addr: u64,
}

/// `vcpu_register_vcpu_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RegisterVcpuInfo {
    /// The guest frame holding it.
    pub mfn: u64,
    /// Its offset in that frame.
    pub offset: u32,
    /// Padding.
    pub rsvd: u32,
}

/// `vcpu_hvm_context` in `VCPU_HVM_MODE_64B` (`hvm/hvm_vcpu.h`): a PVH vCPU started directly in
/// long mode (segments flat, set by Xen).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct VcpuHvmContext64 {
    /// `VCPU_HVM_MODE_64B` (1).
    pub mode: u32,
    /// Padding.
    pub pad: u32,
    /// General registers in the header's order: rax rcx rdx rbx rsp rbp rsi rdi rip rflags.
    pub gprs: [u64; 10],
    /// CR0.
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
}

/// `VCPU_HVM_MODE_64B`.
pub const VCPU_HVM_MODE_64B: u32 = 1;

/// `EVTCHNOP_*` (`event_channel.h`).
pub mod evtchn {
    /// Bind a virtual IRQ to a port on a vCPU (`evtchn_bind_virq`).
    pub const BIND_VIRQ: usize = 1;
    /// Close a port.
    pub const CLOSE: usize = 3;
    /// Notify the other end (`evtchn_send`).
    pub const SEND: usize = 4;
    /// Allocate a port another domain may bind (`evtchn_alloc_unbound`).
    pub const ALLOC_UNBOUND: usize = 6;
    /// Allocate an IPI port on a vCPU (`evtchn_bind_ipi`).
    pub const BIND_IPI: usize = 7;
    /// Re-bind a port to another vCPU (`evtchn_bind_vcpu`).
    pub const BIND_VCPU: usize = 8;
    /// Unmask a port, re-raising it if pending.
    pub const UNMASK: usize = 9;
}

/// `VIRQ_TIMER`: the vCPU's timer (single-shot or periodic).
pub const VIRQ_TIMER: u32 = 0;

/// `evtchn_bind_virq`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BindVirq {
    /// The virtual IRQ.
    pub virq: u32,
    /// The vCPU it is delivered to.
    pub vcpu: u32,
    /// Out: the port.
    pub port: u32,
}

/// `evtchn_bind_ipi`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BindIpi {
    /// The vCPU the port notifies.
    pub vcpu: u32,
    /// Out: the port.
    pub port: u32,
}

/// `evtchn_bind_vcpu`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BindVcpu {
    /// The port.
    pub port: u32,
    /// Its new vCPU.
    pub vcpu: u32,
}

/// `evtchn_alloc_unbound`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AllocUnbound {
    /// The allocating domain (`DOMID_SELF`).
    pub dom: u16,
    /// The domain that may bind it.
    pub remote_dom: u16,
    /// Out: the port.
    pub port: u32,
}

/// `DOMID_SELF`.
pub const DOMID_SELF: u16 = 0x7ff0;

/// `HVMOP_*` and `HVM_PARAM_*`.
pub mod hvm {
    /// `HVMOP_set_param`.
    pub const SET_PARAM: usize = 0;
    /// `HVMOP_get_param`.
    pub const GET_PARAM: usize = 1;
    /// How event upcalls reach the guest; `CALLBACK_TYPE_VECTOR << 56 | vector`.
    pub const PARAM_CALLBACK_IRQ: u32 = 0;
    /// The xenstore ring's frame.
    pub const PARAM_STORE_PFN: u32 = 1;
    /// The xenstore ring's event channel.
    pub const PARAM_STORE_EVTCHN: u32 = 2;
    /// The PV console ring's frame.
    pub const PARAM_CONSOLE_PFN: u32 = 17;
    /// The PV console ring's event channel.
    pub const PARAM_CONSOLE_EVTCHN: u32 = 18;
    /// `HVM_PARAM_CALLBACK_TYPE_VECTOR`: upcalls as an x86 vector, no LAPIC EOI.
    pub const CALLBACK_TYPE_VECTOR: u64 = 2;
}

/// `xen_hvm_param`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HvmParam {
    /// `DOMID_SELF`.
    pub domid: u16,
    /// Padding.
    pub pad: u16,
    /// `HVM_PARAM_*`.
    pub index: u32,
    /// The value (in for set, out for get).
    pub value: u64,
}

/// `XENMEM_add_to_physmap` and its map spaces (`memory.h`).
pub mod memory {
    /// `XENMEM_add_to_physmap`.
    pub const ADD_TO_PHYSMAP: usize = 7;
    /// `XENMEM_memory_map`: the domain's e820 map (`xen_memory_map`).
    pub const MEMORY_MAP: usize = 9;
    /// `XENMAPSPACE_shared_info`.
    pub const SPACE_SHARED_INFO: u32 = 0;
    /// `XENMAPSPACE_grant_table`.
    pub const SPACE_GRANT_TABLE: u32 = 1;
}

/// `xen_add_to_physmap`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AddToPhysmap {
    /// `DOMID_SELF`.
    pub domid: u16,
    /// Pages (gmfn_range only).
    pub size: u16,
    /// `XENMAPSPACE_*`.
    pub space: u32,
    /// Index in the space.
    pub idx: u64,
    /// The guest frame to map it at.
    pub gpfn: u64,
}

/// `xen_memory_map`: in, the buffer's capacity in entries; out, the entries written.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryMapArg {
    /// Entries.
    pub nr_entries: u32,
    /// Padding.
    pub pad: u32,
    /// The buffer of packed 20-byte e820 entries (address, size, type).
    pub buffer: u64,
}

/// Bytes of one e820 entry in `XENMEM_memory_map`'s buffer (packed).
pub const E820_ENTRY_BYTES: usize = 20;

/// Decodes `XENMEM_memory_map`'s packed e820 entries: `(address, size, type)` each.
pub fn e820_entries(buf: &[u8], count: usize) -> impl Iterator<Item = (u64, u64, u32)> + '_ {
    buf.chunks_exact(E820_ENTRY_BYTES).take(count).map(|e| {
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&e[o..o + 8]);
            u64::from_le_bytes(b)
        };
        (
            u64_at(0),
            u64_at(8),
            u32::from_le_bytes([e[16], e[17], e[18], e[19]]),
        )
    })
}

/// Negative errno values Xen returns, named for messages.
pub fn errno_name(rc: i64) -> &'static str {
    match -rc {
        1 => "EPERM",
        2 => "ENOENT",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        22 => "EINVAL",
        28 => "ENOSPC",
        38 => "ENOSYS",
        62 => "ETIME",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::mem::{offset_of, size_of};
    use std::vec::Vec;

    #[test]
    fn layouts_match_the_headers() {
        assert_eq!(size_of::<SingleshotTimer>(), 16);
        assert_eq!(size_of::<BindVirq>(), 12);
        assert_eq!(size_of::<BindIpi>(), 8);
        assert_eq!(size_of::<AllocUnbound>(), 8);
        assert_eq!(offset_of!(AllocUnbound, port), 4);
        assert_eq!(size_of::<HvmParam>(), 16);
        assert_eq!(offset_of!(HvmParam, value), 8);
        assert_eq!(size_of::<AddToPhysmap>(), 24);
        assert_eq!(offset_of!(AddToPhysmap, gpfn), 16);
        assert_eq!(offset_of!(VcpuHvmContext64, gprs), 8);
        assert_eq!(offset_of!(VcpuHvmContext64, cr0), 88);
        assert_eq!(offset_of!(VcpuHvmContext64, efer), 112);
        // The union's two members are both 112 bytes, so the whole context is 120.
        assert_eq!(size_of::<VcpuHvmContext64>(), 120);
    }

    #[test]
    fn e820_entries_decode_packed() {
        let mut buf = [0u8; 60];
        buf[0..8].copy_from_slice(&0x1000u64.to_le_bytes());
        buf[8..16].copy_from_slice(&0x9_e000u64.to_le_bytes());
        buf[16..20].copy_from_slice(&1u32.to_le_bytes());
        buf[20..28].copy_from_slice(&0x10_0000u64.to_le_bytes());
        buf[28..36].copy_from_slice(&0x800_0000u64.to_le_bytes());
        buf[36..40].copy_from_slice(&2u32.to_le_bytes());
        let got: Vec<_> = e820_entries(&buf, 2).collect();
        assert_eq!(got, [(0x1000, 0x9_e000, 1), (0x10_0000, 0x800_0000, 2)]);
        // A count beyond the buffer stops at the buffer.
        assert_eq!(e820_entries(&buf[..30], 5).count(), 1);
    }

    #[test]
    fn names() {
        assert_eq!(shutdown_name(shutdown::CRASH), "crash");
        assert_eq!(shutdown_name(99), "unknown");
        assert_eq!(errno_name(-1), "EPERM");
        assert_eq!(errno_name(-2), "ENOENT");
    }
}
