//! Xen hypercalls on x86_64: the hypercall page and typed calls.
//!
//! Xen's CPUID leaves sit at 0x4000_0000 + n·0x100 (n < 0x100; other hypervisors may come
//! first). The base leaf's signature is `XenVMMXenVMM`; leaf base+1 gives the version, base+2
//! the number of hypercall pages and the MSR that installs them: writing a page's physical
//! address there makes Xen fill it with one 32-byte stub per hypercall (`vmmcall` or `vmcall`,
//! whichever the CPU has). A call loads its arguments into RDI, RSI, RDX, R10, R8 and calls the
//! stub; the result is in RAX.
#![allow(
    unsafe_code,
    reason = "CPUID/WRMSR for the hypercall page and the calls themselves; each use has a SAFETY note"
)]

use core::sync::atomic::{AtomicBool, Ordering};
use rhea_board_xen_common::abi::{self, hypercall as nr};
use rhea_board_xen_common::shared::{SharedInfo, VcpuInfo};

core::arch::global_asm!(
    r#"
    /* One page of code Xen overwrites with its stubs (the hypercall MSR). In .text: the
     * kernel's page tables map it executable. */
    .section .text.rhea_xen_hypercall_page, "ax"
    .balign 4096
    .global rhea_xen_hypercall_page
rhea_xen_hypercall_page:
    .fill 4096, 1, 0xcc
    "#
);

unsafe extern "C" {
    static rhea_xen_hypercall_page: u8;
}

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// What Xen's CPUID leaves say.
#[derive(Clone, Copy, Debug)]
pub(crate) struct XenCpuid {
    /// The base leaf (0x4000_0000 + n·0x100).
    pub(crate) base: u32,
    /// `(major, minor)`.
    pub(crate) version: (u32, u32),
}

fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    let r = core::arch::x86_64::__cpuid(leaf);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Finds Xen's CPUID leaves; `None` when not running under Xen.
pub(crate) fn detect() -> Option<XenCpuid> {
    (0..0x100u32)
        .map(|n| 0x4000_0000 + n * 0x100)
        .find_map(|base| {
            let (max, b, c, d) = cpuid(base);
            // "XenVMMXenVMM" as CPUID returns it in EBX, ECX, EDX (no allocation: no heap yet).
            let xen = (b, c, d) == (0x566e_6558, 0x6558_4d4d, 0x4d4d_566e);
            (xen && max >= base + 2).then(|| {
                let (v, ..) = cpuid(base + 1);
                XenCpuid {
                    base,
                    version: (v >> 16, v & 0xffff),
                }
            })
        })
}

/// Installs the hypercall page. Call once on the boot CPU before any hypercall.
pub(crate) fn install(xen: XenCpuid) {
    let (pages, msr, ..) = cpuid(xen.base + 2);
    assert!(pages >= 1, "Xen offers no hypercall page");
    let page = core::ptr::addr_of!(rhea_xen_hypercall_page) as u64;
    // SAFETY: the MSR is the one Xen's CPUID leaf names for exactly this; the page is a
    // page-aligned page of the image (identity-mapped: virtual = physical) reserved for it.
    unsafe { rhea_arch::wrmsr(msr, page) };
    INSTALLED.store(true, Ordering::Release);
}

/// Calls hypercall `number` with up to three arguments.
///
/// # Safety
/// The arguments must be what that hypercall expects: pointers to live, correctly laid-out
/// structures the hypercall may read or write.
unsafe fn call3(number: usize, a1: u64, a2: u64, a3: u64) -> i64 {
    debug_assert!(INSTALLED.load(Ordering::Relaxed));
    let entry = core::ptr::addr_of!(rhea_xen_hypercall_page) as u64 + number as u64 * 32;
    let ret: i64;
    // SAFETY: `entry` is the stub Xen wrote for `number` (installed at boot); the stub
    // preserves everything but RAX and the argument registers, which are marked clobbered;
    // memory effects are the caller's contract.
    unsafe {
        core::arch::asm!(
            "call {entry}",
            entry = in(reg) entry,
            inout("rdi") a1 => _,
            inout("rsi") a2 => _,
            inout("rdx") a3 => _,
            lateout("rax") ret,
            out("r10") _,
            out("r8") _,
            out("rcx") _,
            out("r11") _,
        );
    }
    ret
}

/// `console_io(CONSOLEIO_write)`; Xen refuses it (`-EPERM`) to domUs of a release build.
pub(crate) fn console_write(bytes: &[u8]) -> i64 {
    // SAFETY: Xen reads `len` bytes from the buffer, which is live for the call.
    unsafe {
        call3(
            nr::CONSOLE_IO,
            abi::CONSOLEIO_WRITE as u64,
            bytes.len() as u64,
            bytes.as_ptr() as u64,
        )
    }
}

/// `sched_op(SCHEDOP_shutdown, &reason)`; returns only if Xen refused.
pub(crate) fn shutdown(reason: u32) -> i64 {
    let r = reason;
    // SAFETY: the argument is a pointer to a `u32` reason, live for the call.
    unsafe {
        call3(
            nr::SCHED_OP,
            abi::sched::SHUTDOWN as u64,
            &raw const r as u64,
            0,
        )
    }
}

/// `event_channel_op(cmd, &arg)`.
///
/// # Safety
/// `arg` must be the structure `cmd` takes (`abi` layouts, or a `u32` port for SEND, UNMASK
/// and CLOSE): Xen reads and writes that many bytes at it.
unsafe fn evtchn_op<T>(cmd: usize, arg: &mut T) -> i64 {
    // SAFETY: per the contract `arg` is the structure of `cmd`, live for the call; Xen touches
    // nothing else.
    unsafe { call3(nr::EVENT_CHANNEL_OP, cmd as u64, arg as *mut T as u64, 0) }
}

/// `EVTCHNOP_send` on `port`.
pub(crate) fn evtchn_send(port: u32) -> i64 {
    let mut p = port;
    // SAFETY: SEND takes an `evtchn_send`, one `u32` port.
    unsafe { evtchn_op(abi::evtchn::SEND, &mut p) }
}

/// `EVTCHNOP_unmask` on `port` (Xen re-raises it if pending).
pub(crate) fn evtchn_unmask(port: u32) -> i64 {
    let mut p = port;
    // SAFETY: UNMASK takes an `evtchn_unmask`, one `u32` port.
    unsafe { evtchn_op(abi::evtchn::UNMASK, &mut p) }
}

/// `EVTCHNOP_close` on `port`.
pub(crate) fn evtchn_close(port: u32) -> i64 {
    let mut p = port;
    // SAFETY: CLOSE takes an `evtchn_close`, one `u32` port.
    unsafe { evtchn_op(abi::evtchn::CLOSE, &mut p) }
}

/// `EVTCHNOP_bind_virq`: a port for `virq` on vCPU `vcpu`.
pub(crate) fn bind_virq(virq: u32, vcpu: u32) -> Result<u32, i64> {
    let mut b = abi::BindVirq {
        virq,
        vcpu,
        port: 0,
    };
    // SAFETY: BIND_VIRQ takes an `evtchn_bind_virq`.
    match unsafe { evtchn_op(abi::evtchn::BIND_VIRQ, &mut b) } {
        rc if rc < 0 => Err(rc),
        _ => Ok(b.port),
    }
}

/// `EVTCHNOP_bind_ipi`: a port notifying vCPU `vcpu`.
pub(crate) fn bind_ipi(vcpu: u32) -> Result<u32, i64> {
    let mut b = abi::BindIpi { vcpu, port: 0 };
    // SAFETY: BIND_IPI takes an `evtchn_bind_ipi`.
    match unsafe { evtchn_op(abi::evtchn::BIND_IPI, &mut b) } {
        rc if rc < 0 => Err(rc),
        _ => Ok(b.port),
    }
}

/// `EVTCHNOP_bind_vcpu`: `port`'s events go to vCPU `vcpu` from now on.
pub(crate) fn bind_vcpu(port: u32, vcpu: u32) -> i64 {
    let mut b = abi::BindVcpu { port, vcpu };
    // SAFETY: BIND_VCPU takes an `evtchn_bind_vcpu`.
    unsafe { evtchn_op(abi::evtchn::BIND_VCPU, &mut b) }
}

/// `EVTCHNOP_alloc_unbound`: a port domain `remote` may bind.
pub(crate) fn alloc_unbound(remote: u16) -> Result<u32, i64> {
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

/// `vcpu_op(cmd, vcpu, arg)`; `arg` may be null for commands without one.
///
/// # Safety
/// `arg` must be the structure `cmd` takes, or `None` where it takes none.
unsafe fn vcpu_op<T>(cmd: usize, vcpu: usize, arg: Option<&mut T>) -> i64 {
    let ptr = arg.map_or(0, |a| a as *mut T as u64);
    // SAFETY: per the contract the pointer is `cmd`'s structure (or null), live for the call.
    unsafe { call3(nr::VCPU_OP, cmd as u64, vcpu as u64, ptr) }
}

/// A `vcpu_op` command that takes no argument (`IS_UP`, `UP`, `STOP_*_TIMER`).
pub(crate) fn vcpu_op_plain(cmd: usize, vcpu: usize) -> i64 {
    debug_assert!(matches!(
        cmd,
        abi::vcpu::IS_UP
            | abi::vcpu::UP
            | abi::vcpu::STOP_PERIODIC_TIMER
            | abi::vcpu::STOP_SINGLESHOT_TIMER
    ));
    // SAFETY: these commands take no argument (a null pointer).
    unsafe { vcpu_op::<()>(cmd, vcpu, None) }
}

/// `VCPUOP_set_singleshot_timer` on `vcpu` (the calling one) at Xen system time `abs_ns`.
pub(crate) fn set_singleshot_timer(vcpu: usize, abs_ns: u64) -> i64 {
    let mut t = abi::SingleshotTimer {
        timeout_abs_ns: abs_ns,
        flags: 0,
    };
    // SAFETY: SET_SINGLESHOT_TIMER takes a `vcpu_set_singleshot_timer`.
    unsafe { vcpu_op(abi::vcpu::SET_SINGLESHOT_TIMER, vcpu, Some(&mut t)) }
}

/// `VCPUOP_register_vcpu_info`: Xen keeps vCPU `vcpu`'s `vcpu_info` in `info` from now on.
pub(crate) fn register_vcpu_info(vcpu: usize, info: &'static VcpuInfo) -> i64 {
    let at = info as *const VcpuInfo as u64;
    let mut r = abi::RegisterVcpuInfo {
        mfn: at >> 12,
        offset: (at & 0xfff) as u32,
        rsvd: 0,
    };
    // SAFETY: a `vcpu_register_vcpu_info` naming `info`'s frame and offset (identity-mapped
    // image): memory of atomics that lives for the run, which Xen may write from now on.
    unsafe { vcpu_op(abi::vcpu::REGISTER_VCPU_INFO, vcpu, Some(&mut r)) }
}

/// `VCPUOP_register_runstate_memory_area`: Xen keeps vCPU `vcpu`'s run-state times in `area`
/// from now on (call on that vCPU).
pub(crate) fn register_runstate_area(
    vcpu: usize,
    area: &'static rhea_board_xen_common::steal::XenRunstate,
) -> i64 {
    let mut r = abi::RegisterRunstateArea {
        addr: area as *const rhea_board_xen_common::steal::XenRunstate as u64,
    };
    // SAFETY: a `vcpu_register_runstate_memory_area` naming `area` by its virtual address (the
    // image is identity-mapped, the same on every vCPU): memory of atomics that lives for the
    // run, which Xen may write from now on.
    unsafe { vcpu_op(abi::vcpu::REGISTER_RUNSTATE_MEMORY_AREA, vcpu, Some(&mut r)) }
}

/// `VCPUOP_initialise` of an offline vCPU with `ctx`.
///
/// # Safety
/// `ctx` must start the vCPU on code, page tables and a stack that are valid for it (it runs
/// from `ctx`'s RIP once `VCPUOP_up`).
pub(crate) unsafe fn vcpu_initialise(vcpu: usize, ctx: &mut abi::VcpuHvmContext64) -> i64 {
    // SAFETY: INITIALISE takes a `vcpu_hvm_context`; what it starts is the caller's contract.
    unsafe { vcpu_op(abi::vcpu::INITIALISE, vcpu, Some(ctx)) }
}

/// `hvm_op(HVMOP_set_param)`.
pub(crate) fn hvm_set_param(index: u32, value: u64) -> i64 {
    let mut p = abi::HvmParam {
        domid: abi::DOMID_SELF,
        pad: 0,
        index,
        value,
    };
    // SAFETY: an `xen_hvm_param`, live for the call.
    unsafe { call3(nr::HVM_OP, abi::hvm::SET_PARAM as u64, &raw mut p as u64, 0) }
}

/// `hvm_op(HVMOP_get_param)`.
pub(crate) fn hvm_get_param(index: u32) -> Result<u64, i64> {
    let mut p = abi::HvmParam {
        domid: abi::DOMID_SELF,
        pad: 0,
        index,
        value: 0,
    };
    // SAFETY: an `xen_hvm_param`, live for the call; Xen writes `value`.
    let rc = unsafe { call3(nr::HVM_OP, abi::hvm::GET_PARAM as u64, &raw mut p as u64, 0) };
    if rc < 0 { Err(rc) } else { Ok(p.value) }
}

/// `sched_op(SCHEDOP_yield)`: lets Xen run other vCPUs (dom0's back ends) while polling.
pub(crate) fn sched_yield() {
    // SAFETY: SCHEDOP_yield takes no argument.
    unsafe { call3(nr::SCHED_OP, abi::sched::YIELD as u64, 0, 0) };
}

/// `console_io(CONSOLEIO_read)` into `buf`: bytes of Xen's serial input for the hardware
/// domain (or an error).
pub(crate) fn console_read(buf: &mut [u8]) -> i64 {
    // SAFETY: Xen writes at most `len` bytes into the buffer, which is live for the call.
    unsafe {
        call3(
            nr::CONSOLE_IO,
            abi::CONSOLEIO_READ as u64,
            buf.len() as u64,
            buf.as_mut_ptr() as u64,
        )
    }
}

/// `memory_op(XENMEM_add_to_physmap)`: maps item `idx` of `space` at guest frame `gpfn`.
///
/// # Safety
/// `gpfn` must be a page the caller owns and reaches only as what Xen maps there: its RAM
/// is replaced.
pub(crate) unsafe fn add_to_physmap(space: u32, idx: u64, gpfn: u64) -> i64 {
    let mut a = abi::AddToPhysmap {
        domid: abi::DOMID_SELF,
        size: 0,
        space,
        idx,
        gpfn,
    };
    // SAFETY: an `xen_add_to_physmap`, live for the call; the frame is the caller's (the
    // contract).
    unsafe {
        call3(
            nr::MEMORY_OP,
            abi::memory::ADD_TO_PHYSMAP as u64,
            &raw mut a as u64,
            0,
        )
    }
}

/// `XENMEM_add_to_physmap(XENMAPSPACE_shared_info)`: Xen's shared-info page replaces the
/// page `page`.
pub(crate) fn map_shared_info(page: &'static SharedInfo) -> i64 {
    let gpfn = page as *const SharedInfo as u64 >> 12;
    // SAFETY: `page` is a page-aligned, page-sized static of atomics (identity-mapped), which
    // Rust reaches only atomically: Xen's page, written concurrently, takes its frame's place.
    unsafe { add_to_physmap(abi::memory::SPACE_SHARED_INFO, 0, gpfn) }
}

/// `memory_op(XENMEM_memory_map)` into `buf` (packed e820 entries); returns the number of
/// entries written.
pub(crate) fn memory_map(buf: &mut [u8]) -> Result<usize, i64> {
    let mut arg = abi::MemoryMapArg {
        nr_entries: (buf.len() / abi::E820_ENTRY_BYTES) as u32,
        pad: 0,
        buffer: buf.as_mut_ptr() as u64,
    };
    // SAFETY: Xen writes at most `nr_entries` 20-byte entries into `buf`, which is live and
    // that large, and updates `nr_entries`.
    let rc = unsafe {
        call3(
            nr::MEMORY_OP,
            abi::memory::MEMORY_MAP as u64,
            &raw mut arg as u64,
            0,
        )
    };
    if rc < 0 {
        Err(rc)
    } else {
        Ok((arg.nr_entries as usize).min(buf.len() / abi::E820_ENTRY_BYTES))
    }
}

/// The hypercalls the shared PV glue (`rhea_board_xen_common::pv`) makes, on x86.
#[derive(Debug)]
pub(crate) struct X86Hypervisor;

impl rhea_board_xen_common::pv::Hypervisor for X86Hypervisor {
    fn hvm_param(&self, index: u32) -> Option<u64> {
        hvm_get_param(index).ok()
    }
    fn evtchn_send(&self, port: u32) {
        evtchn_send(port);
    }
    fn evtchn_alloc_unbound(&self, remote: u16) -> Result<u32, i64> {
        alloc_unbound(remote)
    }
    fn evtchn_close(&self, port: u32) {
        evtchn_close(port);
    }
    fn bind_virq(&self, virq: u32) -> Result<u32, i64> {
        bind_virq(virq, 0)
    }
    unsafe fn add_to_physmap(&self, space: u32, idx: u64, gpfn: u64) -> i64 {
        // SAFETY: the trait's contract is this function's.
        unsafe { add_to_physmap(space, idx, gpfn) }
    }
    fn sched_yield(&self) {
        sched_yield();
    }
    fn console_read(&self, buf: &mut [u8]) -> i64 {
        console_read(buf)
    }
    fn now_ns(&self) -> u64 {
        crate::interrupts::system_time_ns()
    }
    fn report(&self, args: core::fmt::Arguments<'_>) {
        use core::fmt::Write;
        let _ = crate::machine::ConsoleWriter.write_fmt(args);
    }
}

/// The board's hypervisor interface for the PV glue.
pub(crate) static HYPERVISOR: X86Hypervisor = X86Hypervisor;
