//! Xen's hypercall ABI on Arm, the few calls this board makes, and their constants.
//!
//! ABI (Xen's `public/arch-arm.h`, "Hypercall calling convention"): `hvc #0xEA1` (the tag
//! `XEN_HYPERCALL_TAG`), the hypercall number in `x16`, arguments in `x0`–`x4`, the result in
//! `x0`. Xen may clobber `x1`–`x4` and `x16` (debug builds poison them), so every call here
//! declares them clobbered. Pointer arguments are guest *virtual* addresses: Xen translates
//! them through the guest's own stage-1 tables, so any mapped buffer (a thread's stack
//! included) can be passed.
//!
//! The numbers are Xen's stable public ABI, written out here from `public/xen.h`,
//! `public/sched.h` and `public/version.h`; those of the event-channel, vCPU and memory calls
//! come from `rhea_board_xen_common::abi` (shared with xen-x86_64).
//!
//! Frame numbers (`XENMEM_add_to_physmap`'s `gpfn`, `VCPUOP_register_vcpu_info`'s `mfn`) are
//! guest *physical*: callers pass pages of the image, which runs identity-mapped.
#![allow(
    unsafe_code,
    reason = "the hvc instruction; each use has a SAFETY note"
)]

use core::fmt::Write;
use rhea_board_xen_common::abi;
use rhea_board_xen_common::shared::{SharedInfo, VcpuInfo};

/// `XEN_HYPERCALL_TAG`: the `hvc` immediate Xen recognises as a hypercall.
const XEN_HYPERCALL_TAG: u16 = 0xea1;

/// `__HYPERVISOR_xen_version` (public/xen.h).
const HYPERVISOR_XEN_VERSION: u64 = 17;
/// `__HYPERVISOR_console_io` (public/xen.h).
const HYPERVISOR_CONSOLE_IO: u64 = 18;
/// `__HYPERVISOR_sched_op` (public/xen.h; the "new" sched_op taking a struct pointer).
const HYPERVISOR_SCHED_OP: u64 = 29;

/// `CONSOLEIO_write` (public/xen.h): `console_io(CONSOLEIO_write, count, buffer)`.
const CONSOLEIO_WRITE: u64 = 0;
/// `XENVER_version` (public/version.h): returns `major << 16 | minor`.
const XENVER_VERSION: u64 = 0;
/// `SCHEDOP_shutdown` (public/sched.h): `sched_op(SCHEDOP_shutdown, &struct sched_shutdown)`.
const SCHEDOP_SHUTDOWN: u64 = 2;

/// `SHUTDOWN_*` (public/sched.h): why a domain shut down, as the toolstack (or whoever watches
/// the domain) sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum ShutdownReason {
    /// `SHUTDOWN_poweroff`: a clean end.
    Poweroff = 0,
    /// `SHUTDOWN_crash`: the domain failed.
    Crash = 3,
}

impl ShutdownReason {
    fn name(self) -> &'static str {
        match self {
            Self::Poweroff => "poweroff",
            Self::Crash => "crash",
        }
    }
}

/// `struct sched_shutdown` (public/sched.h): `{ unsigned int reason; }`.
#[repr(C)]
struct SchedShutdown {
    reason: u32,
}

/// A hypercall with three arguments; returns Xen's `x0` (negative: `-errno`).
///
/// # Safety
/// `nr` and the arguments must form a call whose effects on guest memory the caller allows:
/// any pointer argument must be valid for what that call reads or writes.
unsafe fn hypercall3(nr: u64, a0: u64, a1: u64, a2: u64) -> i64 {
    let ret: i64;
    // SAFETY: `hvc #0xEA1` traps to Xen, which performs call `nr` and returns to the next
    // instruction with the result in x0; x1–x4 and x16 are declared clobbered. Memory effects
    // are the caller's contract (the asm is not `nomem`, so the compiler has written out any
    // buffer passed by pointer before the call and rereads memory after it).
    unsafe {
        core::arch::asm!(
            "hvc #{tag}",
            tag = const XEN_HYPERCALL_TAG,
            inlateout("x0") a0 => ret,
            inlateout("x1") a1 => _,
            inlateout("x2") a2 => _,
            lateout("x3") _,
            lateout("x4") _,
            inlateout("x16") nr => _,
            options(nostack),
        );
    }
    ret
}

/// Writes `bytes` to Xen's console (`CONSOLEIO_write`). Xen buffers a domU's output per line
/// and prints each line as `(dN) text`. Lock-free and usable from any context; errors (no
/// permission: a domU that is not a console domain) are ignored, there being no other output.
pub(crate) fn console_write(bytes: &[u8]) {
    // A domain a toolstack created has a PV console ring (and no console_io: release Xen
    // refuses it to such domUs); once the ring is set up it is the console.
    if rhea_board_xen_common::pv::console_write(bytes) {
        return;
    }
    // Xen copies at most what it is told; large writes are split so that one call never
    // holds the vCPU in the hypervisor for long.
    for chunk in bytes.chunks(1024) {
        // SAFETY: CONSOLEIO_write only reads `count` bytes at `buffer`, which is the live
        // slice `chunk`.
        let _ = unsafe {
            hypercall3(
                HYPERVISOR_CONSOLE_IO,
                CONSOLEIO_WRITE,
                chunk.len() as u64,
                chunk.as_ptr() as u64,
            )
        };
    }
}

/// Xen's version (`XENVER_version`): (major, minor); `None` if the call failed.
pub(crate) fn xen_version() -> Option<(u32, u32)> {
    // SAFETY: XENVER_version takes no buffer (the argument is NULL) and touches no guest
    // memory.
    let v = unsafe { hypercall3(HYPERVISOR_XEN_VERSION, XENVER_VERSION, 0, 0) };
    let v = u32::try_from(v).ok()?;
    Some((v >> 16, v & 0xffff))
}

/// Shuts the domain down with `reason` (`SCHEDOP_shutdown`). The line printed first,
/// `rhea: xen: SCHEDOP_shutdown reason=N (name)`, is what xtask reads: Xen 4.17 prints nothing
/// when a domU shuts down and keeps running (with no dom0 nobody reaps the domain), so the
/// harness needs the reason on the console. If Xen refuses the call (it returns), that is
/// printed too and the vCPU stops here.
pub(crate) fn shutdown(reason: ShutdownReason) -> ! {
    let mut out = Console;
    let _ = writeln!(
        out,
        "rhea: xen: SCHEDOP_shutdown reason={} ({})",
        reason as u32,
        reason.name()
    );
    // The console back end reads the ring asynchronously: let it take the last lines first.
    rhea_board_xen_common::pv::console_flush();
    let arg = SchedShutdown {
        reason: reason as u32,
    };
    // SAFETY: SCHEDOP_shutdown reads one `struct sched_shutdown` at the pointer, which is
    // `arg`, alive for the call. On success Xen pauses this vCPU for good and never returns.
    let rc = unsafe {
        hypercall3(
            HYPERVISOR_SCHED_OP,
            SCHEDOP_SHUTDOWN,
            &raw const arg as u64,
            0,
        )
    };
    let _ = writeln!(out, "rhea: xen: SCHEDOP_shutdown returned {rc}");
    loop {
        // SAFETY: `wfi` only waits for an interrupt; interrupts stay as they are.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
    }
}

/// `event_channel_op(cmd, &arg)`.
///
/// # Safety
/// `arg` must be the structure `cmd` takes (`abi` layouts, or a `u32` port for SEND and
/// UNMASK): Xen reads and writes that many bytes at it.
unsafe fn evtchn_op<T>(cmd: usize, arg: &mut T) -> i64 {
    // SAFETY: per the contract `arg` is the structure of `cmd`, live for the call; Xen touches
    // nothing else.
    unsafe {
        hypercall3(
            abi::hypercall::EVENT_CHANNEL_OP as u64,
            cmd as u64,
            arg as *mut T as u64,
            0,
        )
    }
}

/// `EVTCHNOP_bind_ipi`: a new port whose events go to vCPU `vcpu`; `Err(-errno)` if refused.
pub(crate) fn bind_ipi(vcpu: u32) -> Result<u32, i64> {
    let mut arg = abi::BindIpi { vcpu, port: 0 };
    // SAFETY: BIND_IPI takes an `evtchn_bind_ipi`.
    match unsafe { evtchn_op(abi::evtchn::BIND_IPI, &mut arg) } {
        rc if rc < 0 => Err(rc),
        _ => Ok(arg.port),
    }
}

/// `EVTCHNOP_bind_vcpu`: `port`'s events go to vCPU `vcpu` from now on.
pub(crate) fn bind_vcpu(port: u32, vcpu: u32) -> i64 {
    let mut arg = abi::BindVcpu { port, vcpu };
    // SAFETY: BIND_VCPU takes an `evtchn_bind_vcpu`.
    unsafe { evtchn_op(abi::evtchn::BIND_VCPU, &mut arg) }
}

/// `EVTCHNOP_send`: notifies `port` (for an IPI port: raises the upcall on its vCPU).
pub(crate) fn evtchn_send(port: u32) -> i64 {
    let mut p = port;
    // SAFETY: SEND takes an `evtchn_send`, which is one `u32` port.
    unsafe { evtchn_op(abi::evtchn::SEND, &mut p) }
}

/// `EVTCHNOP_unmask`: clears `port`'s mask bit; Xen re-raises it if it is pending.
pub(crate) fn evtchn_unmask(port: u32) -> i64 {
    let mut p = port;
    // SAFETY: UNMASK takes an `evtchn_unmask`, which is one `u32` port.
    unsafe { evtchn_op(abi::evtchn::UNMASK, &mut p) }
}

/// `VCPUOP_register_vcpu_info`: from now on Xen keeps vCPU `vcpu`'s `vcpu_info` (upcall flags,
/// pending-word selector, clock) in `info`. Xen accepts it once per vCPU, from the vCPU itself
/// (or for one that is down). On Arm this and `VCPUOP_register_runstate_memory_area` are the
/// only vCPU operations (`do_arm_vcpu_op`, xen/arch/arm/domain.c: every other command is
/// `-EINVAL` — no single-shot or periodic timer).
pub(crate) fn register_vcpu_info(vcpu: usize, info: &'static VcpuInfo) -> i64 {
    let at = info as *const VcpuInfo as u64;
    let mut arg = abi::RegisterVcpuInfo {
        mfn: at >> 12,
        offset: (at & 0xfff) as u32,
        rsvd: 0,
    };
    // SAFETY: the argument is a `vcpu_register_vcpu_info`, live for the call. It names
    // `info`'s frame and offset (the image is identity-mapped, so its address is physical):
    // memory that lives for the run, of atomics only, which Xen may write from now on.
    unsafe {
        hypercall3(
            abi::hypercall::VCPU_OP as u64,
            abi::vcpu::REGISTER_VCPU_INFO as u64,
            vcpu as u64,
            &raw mut arg as u64,
        )
    }
}

/// `VCPUOP_register_runstate_memory_area`: Xen keeps vCPU `vcpu`'s run-state times in `area`
/// from now on. On Arm Xen translates the address once, at registration, with the calling
/// vCPU's page tables: call it on that vCPU.
pub(crate) fn register_runstate_area(
    vcpu: usize,
    area: &'static rhea_board_xen_common::steal::XenRunstate,
) -> i64 {
    let mut arg = abi::RegisterRunstateArea {
        addr: area as *const rhea_board_xen_common::steal::XenRunstate as u64,
    };
    // SAFETY: the argument is a `vcpu_register_runstate_memory_area`, live for the call,
    // naming `area` by its (identity-mapped) address: memory of atomics that lives for the
    // run, which Xen may write from now on.
    unsafe {
        hypercall3(
            abi::hypercall::VCPU_OP as u64,
            abi::vcpu::REGISTER_RUNSTATE_MEMORY_AREA as u64,
            vcpu as u64,
            &raw mut arg as u64,
        )
    }
}

/// `XENMEM_add_to_physmap(XENMAPSPACE_shared_info)`: Xen's shared-info page replaces the RAM
/// page `page` at its guest frame.
pub(crate) fn map_shared_info(page: &'static SharedInfo) -> i64 {
    let mut a = abi::AddToPhysmap {
        domid: abi::DOMID_SELF,
        size: 0,
        space: abi::memory::SPACE_SHARED_INFO,
        idx: 0,
        gpfn: page as *const SharedInfo as u64 >> 12,
    };
    // SAFETY: an `xen_add_to_physmap`, live for the call. The frame is `page`'s own (a
    // page-aligned, page-sized static of atomics, identity-mapped): Xen's page, which it
    // writes concurrently, takes its place for the run, and Rust only accesses it atomically.
    unsafe {
        hypercall3(
            abi::hypercall::MEMORY_OP as u64,
            abi::memory::ADD_TO_PHYSMAP as u64,
            &raw mut a as u64,
            0,
        )
    }
}

/// [`console_write`] as a `fmt::Write`.
pub(crate) struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        console_write(s.as_bytes());
        Ok(())
    }
}

/// `HVMOP_get_param` (Arm's Xen keeps the toolstack's `HVM_PARAM_*` too: the xenstore and
/// console rings of a domain `xl` created).
pub(crate) fn hvm_get_param(index: u32) -> Result<u64, i64> {
    let mut p = abi::HvmParam {
        domid: abi::DOMID_SELF,
        pad: 0,
        index,
        value: 0,
    };
    // SAFETY: an `xen_hvm_param`, live for the call; Xen writes `value`.
    let rc = unsafe {
        hypercall3(
            abi::hypercall::HVM_OP as u64,
            abi::hvm::GET_PARAM as u64,
            &raw mut p as u64,
            0,
        )
    };
    if rc < 0 { Err(rc) } else { Ok(p.value) }
}

/// `SCHEDOP_yield`.
pub(crate) fn sched_yield() {
    // SAFETY: SCHEDOP_yield takes no argument and touches no guest memory.
    let _ = unsafe { hypercall3(HYPERVISOR_SCHED_OP, abi::sched::YIELD as u64, 0, 0) };
}

/// The hypercalls the shared PV glue (`rhea_board_xen_common::pv`) makes, on Arm.
#[derive(Debug)]
pub(crate) struct ArmHypervisor;

impl rhea_board_xen_common::pv::Hypervisor for ArmHypervisor {
    fn hvm_param(&self, index: u32) -> Option<u64> {
        hvm_get_param(index).ok()
    }
    fn evtchn_send(&self, port: u32) {
        let _ = evtchn_send(port);
    }
    fn evtchn_alloc_unbound(&self, remote: u16) -> Result<u32, i64> {
        let mut a = abi::AllocUnbound {
            dom: abi::DOMID_SELF,
            remote_dom: remote,
            port: 0,
        };
        // SAFETY: ALLOC_UNBOUND takes an `evtchn_alloc_unbound`.
        match unsafe { evtchn_op(abi::evtchn::ALLOC_UNBOUND, &mut a) } {
            rc if rc < 0 => Err(rc),
            _ => Ok(a.port),
        }
    }
    fn evtchn_close(&self, port: u32) {
        let mut p = port;
        // SAFETY: CLOSE takes an `evtchn_close`, which is one `u32` port.
        let _ = unsafe { evtchn_op(abi::evtchn::CLOSE, &mut p) };
    }
    fn bind_virq(&self, virq: u32) -> Result<u32, i64> {
        let mut b = abi::BindVirq {
            virq,
            vcpu: 0,
            port: 0,
        };
        // SAFETY: BIND_VIRQ takes an `evtchn_bind_virq`.
        match unsafe { evtchn_op(abi::evtchn::BIND_VIRQ, &mut b) } {
            rc if rc < 0 => Err(rc),
            _ => Ok(b.port),
        }
    }
    unsafe fn add_to_physmap(&self, space: u32, idx: u64, gpfn: u64) -> i64 {
        let mut a = abi::AddToPhysmap {
            domid: abi::DOMID_SELF,
            size: 0,
            space,
            idx,
            gpfn,
        };
        // SAFETY: an `xen_add_to_physmap`, live for the call; the frame is the caller's (the
        // trait's contract), whose RAM Xen's page replaces.
        unsafe {
            hypercall3(
                abi::hypercall::MEMORY_OP as u64,
                abi::memory::ADD_TO_PHYSMAP as u64,
                &raw mut a as u64,
                0,
            )
        }
    }
    fn sched_yield(&self) {
        sched_yield();
    }
    fn console_read(&self, _buf: &mut [u8]) -> i64 {
        // Only the hardware domain reads Xen's console; this board never is one.
        -1
    }
    fn now_ns(&self) -> u64 {
        let (count, freq): (u64, u64);
        // SAFETY: reading the virtual counter and its frequency has no side effect (EL1 may
        // read them).
        unsafe {
            core::arch::asm!("mrs {}, cntvct_el0", out(reg) count, options(nomem, nostack));
            core::arch::asm!("mrs {}, cntfrq_el0", out(reg) freq, options(nomem, nostack));
        }
        ((u128::from(count) * 1_000_000_000) / u128::from(freq.max(1))) as u64
    }
    fn report(&self, args: core::fmt::Arguments<'_>) {
        let _ = Console.write_fmt(args);
    }
}

/// The board's hypervisor interface for the PV glue.
pub(crate) static HYPERVISOR: ArmHypervisor = ArmHypervisor;
