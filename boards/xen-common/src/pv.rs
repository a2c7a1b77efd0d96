//! Xen's paravirtual devices for both Xen boards: the PV console ring (a domU's normal
//! console, and console input), console input of the hardware domain (`VIRQ_CONSOLE` +
//! `CONSOLEIO_read`), the grant table, and xenstore — whose Xenbus devices (netfront) the
//! device model binds (`rhea_drivers::xen`: the protocols live there, host-tested; this module
//! maps pages and makes hypercalls through the board's [`Hypervisor`]).
//!
//! Pages: the console ring and the xenstore ring are pages the domain builder placed in the
//! guest's physical memory (`HVM_PARAM_CONSOLE_PFN`, `HVM_PARAM_STORE_PFN`), outside the RAM
//! of the memory map; the board maps them (`map_shared`: on x86 uncached, which x86 keeps
//! coherent; on Arm as normal write-back memory, the attribute the other side uses). The grant
//! table's frames are mapped by Xen over pages of the image reserved for them
//! (`XENMEM_add_to_physmap`, `XENMAPSPACE_grant_table`).
//!
//! Lock: the console ring has one writer at a time, serialised by `CONSOLE_OWNER` (the CPU
//! writing, taken with interrupts disabled; a fault that nests inside a write on the same
//! CPU falls back to port 0xE9 instead of waiting for itself). It is a leaf.
#![allow(
    unsafe_code,
    reason = "wrapping mapped pages and the image's grant frames as SharedMem; each use has a SAFETY note"
)]

use crate::abi;
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use rhea_drivers::bus::{Bus, Driver};
use rhea_drivers::xen::console::ConsoleRing;
use rhea_drivers::xen::netfront::{NetfrontConfig, XenNetDriver};
use rhea_drivers::xen::xenbus::XenbusBus;
use rhea_drivers::xen::xenstore::XenStore;
use rhea_drivers::xen::{GrantTable, SharedMem, XenError, XenHost};
use spin::Once;

/// The hypercalls and clock the PV glue needs from a board.
pub trait Hypervisor: Sync {
    /// `HVMOP_get_param`; `None` on error.
    fn hvm_param(&self, index: u32) -> Option<u64>;
    /// `EVTCHNOP_send`.
    fn evtchn_send(&self, port: u32);
    /// `EVTCHNOP_alloc_unbound` for `remote`; the port or Xen's error.
    fn evtchn_alloc_unbound(&self, remote: u16) -> Result<u32, i64>;
    /// `EVTCHNOP_close`.
    fn evtchn_close(&self, port: u32);
    /// `EVTCHNOP_bind_virq` of a global VIRQ on vCPU 0; the port or Xen's error.
    fn bind_virq(&self, virq: u32) -> Result<u32, i64>;
    /// `XENMEM_add_to_physmap`: Xen's result.
    ///
    /// # Safety
    /// `gpfn` must be a page the caller owns and reaches only as what Xen maps there: its RAM
    /// is replaced.
    unsafe fn add_to_physmap(&self, space: u32, idx: u64, gpfn: u64) -> i64;
    /// `SCHEDOP_yield`.
    fn sched_yield(&self);
    /// `CONSOLEIO_read` into `buf`: bytes read or Xen's error.
    fn console_read(&self, buf: &mut [u8]) -> i64;
    /// A monotonic clock in nanoseconds (any origin).
    fn now_ns(&self) -> u64;
    /// Writes a board-level report line (no lock; used for bring-up messages).
    fn report(&self, args: core::fmt::Arguments<'_>);
}

/// The board's hypervisor interface, set by [`init`].
static HV: Once<&'static dyn Hypervisor> = Once::new();

fn hv() -> Option<&'static dyn Hypervisor> {
    HV.get().copied()
}

macro_rules! report {
    ($hv:expr, $($t:tt)*) => { $hv.report(format_args!($($t)*)) };
}

/// Grant-table frames mapped (512 v1 entries each).
const GRANT_FRAMES: usize = 4;

/// Pages of the image that Xen maps the grant table over.
#[repr(C, align(4096))]
struct GrantPages(UnsafeCell<[u8; GRANT_FRAMES * 4096]>);
// SAFETY: the memory is only reached through the `SharedMem` made once in `init`, whose
// accesses are atomic.
unsafe impl Sync for GrantPages {}
static GRANT_PAGES: GrantPages = GrantPages(UnsafeCell::new([0; GRANT_FRAMES * 4096]));

/// The console ring and its event channel (a domU's console once `init` ran).
static CONSOLE: Once<(ConsoleRing, u32)> = Once::new();
/// The CPU writing to the console ring, or `FREE`.
static CONSOLE_OWNER: AtomicUsize = AtomicUsize::new(FREE);
const FREE: usize = usize::MAX;
/// Output bytes dropped because the console back end did not drain the ring in time.
static CONSOLE_DROPPED: AtomicU64 = AtomicU64::new(0);
/// How long one write waits for room in the ring.
const CONSOLE_WAIT_NS: u64 = 2_000_000_000;
/// The hardware domain's `VIRQ_CONSOLE` port (its console input), 0 if none.
static DOM0_INPUT_PORT: AtomicU32 = AtomicU32::new(0);
/// The xenstore client and the PV drivers' host.
static STORE: Once<Arc<XenStore>> = Once::new();
static HOST: Once<Arc<Host>> = Once::new();

/// What PV drivers get from this board.
struct Host {
    grants: GrantTable,
    hv: &'static dyn Hypervisor,
}

impl XenHost for Host {
    fn evtchn_alloc_unbound(&self, remote_domid: u16) -> Result<u32, XenError> {
        self.hv
            .evtchn_alloc_unbound(remote_domid)
            .map_err(|code| XenError::Hypercall {
                op: "EVTCHNOP_alloc_unbound",
                code,
            })
    }

    fn evtchn_send(&self, port: u32) {
        self.hv.evtchn_send(port);
    }

    fn evtchn_close(&self, port: u32) {
        self.hv.evtchn_close(port);
    }

    fn alloc_shared_pages(&self, count: usize) -> Option<SharedMem> {
        // The heap is identity-mapped, write-back RAM: its addresses are guest frames.
        SharedMem::alloc(count)
    }

    fn grant_table(&self) -> &GrantTable {
        &self.grants
    }

    fn now_ns(&self) -> u64 {
        self.hv.now_ns()
    }

    fn relax(&self) {
        // Let Xen run dom0's back ends (they may share this physical CPU).
        self.hv.sched_yield();
    }
}

/// Maps `gfn`'s page with `map` and wraps it.
fn map_page(
    hv: &dyn Hypervisor,
    gfn: u64,
    map: &dyn Fn(u64, u64) -> bool,
    what: &str,
) -> Option<SharedMem> {
    let phys = gfn << 12;
    if gfn == 0 || !map(phys, 4096) {
        report!(hv, "rhea: xen: cannot map the {what} page (gfn {gfn:#x})\n");
        return None;
    }
    // SAFETY: `map` identity-mapped the page (virtual = physical); it is the page Xen's
    // domain builder gave the guest for exactly this and nothing else in Rhea uses it.
    Some(unsafe { SharedMem::new(NonNull::new(phys as *mut u8)?, 4096, gfn) })
}

/// Sets up the PV devices: console ring (then the console), grant table, xenstore; the
/// hardware domain's console input. Call once on the boot CPU after the event channels, with
/// `map_shared` identity-mapping a page of memory shared with other domains (see the module
/// doc).
pub fn init(
    hv: &'static dyn Hypervisor,
    map_shared: &dyn Fn(u64, u64) -> bool,
    hardware_domain: bool,
) {
    HV.call_once(|| hv);
    let map = map_shared;
    let param = |index| hv.hvm_param(index).unwrap_or(0);
    let cons_gfn = param(abi::hvm::PARAM_CONSOLE_PFN);
    let cons_port = param(abi::hvm::PARAM_CONSOLE_EVTCHN) as u32;
    if cons_gfn != 0
        && cons_port != 0
        && let Some(page) = map_page(hv, cons_gfn, map, "console")
    {
        match ConsoleRing::new(page) {
            Ok(ring) => {
                report!(
                    hv,
                    "rhea: xen: console: PV ring (gfn {cons_gfn:#x}, event channel {cons_port}) from here on\n"
                );
                CONSOLE.call_once(|| (ring, cons_port));
            }
            Err(e) => report!(hv, "rhea: xen: console ring unusable: {e}\n"),
        }
    }
    if hardware_domain && let Ok(port) = hv.bind_virq(abi::VIRQ_CONSOLE) {
        DOM0_INPUT_PORT.store(port, Ordering::Relaxed);
    }
    let store_gfn = param(abi::hvm::PARAM_STORE_PFN);
    let store_port = param(abi::hvm::PARAM_STORE_EVTCHN) as u32;
    if store_gfn == 0 || store_port == 0 {
        report!(
            hv,
            "rhea: xen: no xenstore (no toolstack): no Xenbus devices\n"
        );
        return;
    }
    let Some(grants) = map_grant_table(hv) else {
        return;
    };
    let host = HOST.call_once(|| Arc::new(Host { grants, hv })).clone();
    let Some(page) = map_page(hv, store_gfn, map, "xenstore") else {
        return;
    };
    match XenStore::new(host, page, store_port) {
        Ok(xs) => {
            report!(
                hv,
                "rhea: xen: xenstore ring at gfn {store_gfn:#x}, event channel {store_port}; \
                 grant table: {GRANT_FRAMES} frames\n"
            );
            STORE.call_once(|| Arc::new(xs));
        }
        Err(e) => report!(hv, "rhea: xen: xenstore unusable: {e}\n"),
    }
}

/// Maps the grant table's first frames over [`GRANT_PAGES`].
fn map_grant_table(hv: &dyn Hypervisor) -> Option<GrantTable> {
    let base = GRANT_PAGES.0.get() as u64;
    for i in 0..GRANT_FRAMES as u64 {
        // SAFETY: the frame is one of `GRANT_PAGES`, reserved for the grant table and reached
        // only through the `SharedMem` made below.
        let rc = unsafe { hv.add_to_physmap(abi::memory::SPACE_GRANT_TABLE, i, (base >> 12) + i) };
        if rc < 0 {
            report!(
                hv,
                "rhea: xen: cannot map grant-table frame {i}: {rc} ({})\n",
                abi::errno_name(rc)
            );
            return None;
        }
    }
    // SAFETY: the pages are the image's, reserved for the grant table, page-aligned and
    // identity-mapped; Xen maps its table frames there (just done) and only this `SharedMem`
    // reaches them.
    let mem = unsafe {
        SharedMem::new(
            NonNull::new(base as *mut u8)?,
            GRANT_FRAMES * 4096,
            base >> 12,
        )
    };
    Some(GrantTable::new(mem))
}

/// Writes to the PV console ring; `false` if the caller must use another console (no ring,
/// or this CPU is already inside a write — a nested fault report).
pub fn console_write(bytes: &[u8]) -> bool {
    let (Some((ring, port)), Some(hv)) = (CONSOLE.get(), hv()) else {
        return false;
    };
    let _irqs = rhea_arch::sync::IrqGuard::new();
    let cpu = rhea_arch::cpu_id().0 as usize;
    loop {
        match CONSOLE_OWNER.compare_exchange(FREE, cpu, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => break,
            Err(owner) if owner == cpu => {
                return false;
            }
            Err(_) => core::hint::spin_loop(),
        }
    }
    let mut rest = bytes;
    let deadline = hv.now_ns().saturating_add(CONSOLE_WAIT_NS);
    while !rest.is_empty() {
        match ring.write(rest) {
            Ok(0) => {
                hv.evtchn_send(*port);
                if hv.now_ns() > deadline {
                    CONSOLE_DROPPED.fetch_add(rest.len() as u64, Ordering::Relaxed);
                    break;
                }
                hv.sched_yield();
            }
            Ok(n) => {
                rest = &rest[n..];
                hv.evtchn_send(*port);
            }
            Err(_) => {
                CONSOLE_DROPPED.fetch_add(rest.len() as u64, Ordering::Relaxed);
                break;
            }
        }
    }
    CONSOLE_OWNER.store(FREE, Ordering::Release);
    true
}

/// Waits (bounded) until the console back end has read everything written: before the
/// domain shuts down, so the last lines are not lost with it.
pub fn console_flush() {
    let (Some((ring, port)), Some(hv)) = (CONSOLE.get(), hv()) else {
        return;
    };
    let deadline = hv.now_ns().saturating_add(CONSOLE_WAIT_NS);
    while !ring.drained() && hv.now_ns() < deadline {
        hv.evtchn_send(*port);
        hv.sched_yield();
    }
}

/// The console input's interrupt line: the console ring's event channel (domU) or
/// `VIRQ_CONSOLE`'s port (hardware domain); line 0 (none) otherwise.
pub fn console_rx_line() -> u32 {
    match CONSOLE.get() {
        Some((_, port)) => *port,
        None => DOM0_INPUT_PORT.load(Ordering::Relaxed),
    }
}

/// Drains at most `max` bytes of console input into `sink`; returns (bytes, errors). The rest
/// stays in the console ring (or the hypervisor's buffer) for the next drain.
pub fn console_rx_drain(max: usize, mut sink: impl FnMut(u8)) -> (usize, usize) {
    let Some(hv) = hv() else { return (0, 0) };
    let mut buf = [0u8; 64];
    let mut total = 0;
    let mut errors = 0;
    // RT: bounded by `max` (each round reads at least one byte or ends).
    while total < max {
        let want = (max - total).min(buf.len());
        let buf = &mut buf[..want];
        let n = match CONSOLE.get() {
            Some((ring, port)) => match ring.read(buf) {
                Ok(n) => {
                    if n > 0 {
                        hv.evtchn_send(*port);
                    }
                    n
                }
                Err(_) => {
                    errors += 1;
                    0
                }
            },
            None if DOM0_INPUT_PORT.load(Ordering::Relaxed) != 0 => {
                let rc = hv.console_read(buf);
                if rc < 0 {
                    errors += 1;
                    0
                } else {
                    (rc as usize).min(buf.len())
                }
            }
            None => 0,
        };
        if n == 0 {
            break;
        }
        buf[..n].iter().for_each(|&b| sink(b));
        total += n;
    }
    (total, errors)
}

/// Xenbus, when xenstore is there.
pub fn buses() -> Vec<Box<dyn Bus>> {
    match STORE.get() {
        Some(xs) => alloc::vec![Box::new(XenbusBus::new(xs.clone())) as Box<dyn Bus>],
        None => Vec::new(),
    }
}

/// The netfront driver, when xenstore is there (linked only when the runtime asks: its `net`
/// feature).
pub fn net_drivers() -> Vec<&'static dyn Driver> {
    let (Some(xs), Some(host)) = (STORE.get(), HOST.get()) else {
        return Vec::new();
    };
    let host: Arc<dyn XenHost> = host.clone();
    // One driver for the whole run: leaked once at boot, like every board's static drivers.
    let netfront: &'static XenNetDriver = Box::leak(Box::new(XenNetDriver::new(
        host,
        xs.clone(),
        NetfrontConfig::default(),
    )));
    alloc::vec![netfront as &'static dyn Driver]
}
