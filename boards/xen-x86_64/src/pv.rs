//! Xen's paravirtual devices, bound to this board: the PV console ring (a domU's normal
//! console, and console input), console input of the hardware domain (`VIRQ_CONSOLE` +
//! `CONSOLEIO_read`), the grant table, and xenstore — whose Xenbus devices (netfront) the
//! device model binds (`rhea_drivers::xen`: the protocols live there, host-tested; this module
//! maps pages and makes hypercalls).
//!
//! Pages: the console ring and the xenstore ring are pages the domain builder placed in the
//! guest's physical memory (`HVM_PARAM_CONSOLE_PFN`, `HVM_PARAM_STORE_PFN`), outside the RAM
//! of the memory map, so they are mapped like device memory (uncached: correct, if slower, for
//! a page of indices and text). The grant table's frames are mapped by Xen over pages of the
//! image reserved for them (`XENMEM_add_to_physmap`, `XENMAPSPACE_grant_table`).
//!
//! Lock: the console ring has one writer at a time, serialised by `CONSOLE_OWNER` (the CPU
//! writing, taken with interrupts disabled; a fault that nests inside a write on the same
//! CPU falls back to port 0xE9 instead of waiting for itself). It is a leaf.
#![allow(
    unsafe_code,
    reason = "wrapping mapped pages and the image's grant frames as SharedMem; each use has a SAFETY note"
)]

use crate::hypercall as hc;
use crate::machine::ConsoleWriter;
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::fmt::Write;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use rhea_board_xen_common::abi;
use rhea_drivers::bus::{Bus, Driver};
use rhea_drivers::xen::console::ConsoleRing;
use rhea_drivers::xen::netfront::{NetfrontConfig, XenNetDriver};
use rhea_drivers::xen::xenbus::XenbusBus;
use rhea_drivers::xen::xenstore::XenStore;
use rhea_drivers::xen::{GrantTable, SharedMem, XenError, XenHost};
use spin::Once;

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
#[derive(Debug)]
struct Host {
    grants: GrantTable,
}

impl XenHost for Host {
    fn evtchn_alloc_unbound(&self, remote_domid: u16) -> Result<u32, XenError> {
        let mut a = abi::AllocUnbound {
            dom: abi::DOMID_SELF,
            remote_dom: remote_domid,
            port: 0,
        };
        let rc = hc::evtchn_op(abi::evtchn::ALLOC_UNBOUND, &mut a);
        if rc < 0 {
            return Err(XenError::Hypercall {
                op: "EVTCHNOP_alloc_unbound",
                code: rc,
            });
        }
        Ok(a.port)
    }

    fn evtchn_send(&self, port: u32) {
        hc::evtchn_send(port);
    }

    fn evtchn_close(&self, port: u32) {
        let mut p = port;
        hc::evtchn_op(abi::evtchn::CLOSE, &mut p);
    }

    fn alloc_shared_pages(&self, count: usize) -> Option<SharedMem> {
        // The heap is identity-mapped, write-back RAM: its addresses are guest frames.
        SharedMem::alloc(count)
    }

    fn grant_table(&self) -> &GrantTable {
        &self.grants
    }

    fn now_ns(&self) -> u64 {
        crate::interrupts::system_time_ns()
    }

    fn relax(&self) {
        // Let Xen run dom0's back ends (they may share this physical CPU).
        hc::sched_yield();
    }
}

/// Maps `gfn`'s page with `map` and wraps it.
fn map_page(gfn: u64, map: &dyn Fn(u64, u64) -> bool, what: &str) -> Option<SharedMem> {
    let phys = gfn << 12;
    if gfn == 0 || !map(phys, 4096) {
        let _ = writeln!(
            ConsoleWriter,
            "rhea: xen: cannot map the {what} page (gfn {gfn:#x})"
        );
        return None;
    }
    // SAFETY: `map` identity-mapped the page (virtual = physical); it is the page Xen's
    // domain builder gave the guest for exactly this and nothing else in Rhea uses it.
    Some(unsafe { SharedMem::new(NonNull::new(phys as *mut u8)?, 4096, gfn) })
}

fn param(index: u32) -> u64 {
    hc::hvm_get_param(index).unwrap_or(0)
}

/// Sets up the PV devices: console ring (then the console), grant table, xenstore; the
/// hardware domain's console input. Call once on the boot CPU after the event channels.
pub(crate) fn init(map: &dyn Fn(u64, u64) -> bool, hardware_domain: bool) {
    let mut w = ConsoleWriter;
    let cons_gfn = param(abi::hvm::PARAM_CONSOLE_PFN);
    let cons_port = param(abi::hvm::PARAM_CONSOLE_EVTCHN) as u32;
    if cons_gfn != 0
        && cons_port != 0
        && let Some(page) = map_page(cons_gfn, map, "console")
    {
        match ConsoleRing::new(page) {
            Ok(ring) => {
                let _ = writeln!(
                    w,
                    "rhea: xen: console: PV ring (gfn {cons_gfn:#x}, event channel {cons_port}) from here on"
                );
                CONSOLE.call_once(|| (ring, cons_port));
            }
            Err(e) => {
                let _ = writeln!(w, "rhea: xen: console ring unusable: {e}");
            }
        }
    }
    if hardware_domain {
        let mut virq = abi::BindVirq {
            virq: abi::VIRQ_CONSOLE,
            vcpu: 0,
            port: 0,
        };
        if hc::evtchn_op(abi::evtchn::BIND_VIRQ, &mut virq) >= 0 {
            DOM0_INPUT_PORT.store(virq.port, Ordering::Relaxed);
        }
    }
    let store_gfn = param(abi::hvm::PARAM_STORE_PFN);
    let store_port = param(abi::hvm::PARAM_STORE_EVTCHN) as u32;
    if store_gfn == 0 || store_port == 0 {
        let _ = writeln!(
            w,
            "rhea: xen: no xenstore (no toolstack): no Xenbus devices"
        );
        return;
    }
    let Some(grants) = map_grant_table() else {
        return;
    };
    let host = HOST.call_once(|| Arc::new(Host { grants })).clone();
    let Some(page) = map_page(store_gfn, map, "xenstore") else {
        return;
    };
    match XenStore::new(host, page, store_port) {
        Ok(xs) => {
            let _ = writeln!(
                w,
                "rhea: xen: xenstore ring at gfn {store_gfn:#x}, event channel {store_port}; \
                 grant table: {GRANT_FRAMES} frames"
            );
            STORE.call_once(|| Arc::new(xs));
        }
        Err(e) => {
            let _ = writeln!(w, "rhea: xen: xenstore unusable: {e}");
        }
    }
}

/// Maps the grant table's first frames over [`GRANT_PAGES`].
fn map_grant_table() -> Option<GrantTable> {
    let base = GRANT_PAGES.0.get() as u64;
    for i in 0..GRANT_FRAMES as u64 {
        let rc = hc::add_to_physmap(abi::memory::SPACE_GRANT_TABLE, i, (base >> 12) + i);
        if rc < 0 {
            let _ = writeln!(
                ConsoleWriter,
                "rhea: xen: cannot map grant-table frame {i}: {rc} ({})",
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
pub(crate) fn console_write(bytes: &[u8]) -> bool {
    let Some((ring, port)) = CONSOLE.get() else {
        return false;
    };
    let was = rhea_arch::irq_save();
    let cpu = rhea_arch::cpu_id().0 as usize;
    loop {
        match CONSOLE_OWNER.compare_exchange(FREE, cpu, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => break,
            Err(owner) if owner == cpu => {
                rhea_arch::irq_restore(was);
                return false;
            }
            Err(_) => core::hint::spin_loop(),
        }
    }
    let mut rest = bytes;
    let deadline = crate::interrupts::system_time_ns().saturating_add(CONSOLE_WAIT_NS);
    while !rest.is_empty() {
        match ring.write(rest) {
            Ok(0) => {
                hc::evtchn_send(*port);
                if crate::interrupts::system_time_ns() > deadline {
                    CONSOLE_DROPPED.fetch_add(rest.len() as u64, Ordering::Relaxed);
                    break;
                }
                hc::sched_yield();
            }
            Ok(n) => {
                rest = &rest[n..];
                hc::evtchn_send(*port);
            }
            Err(_) => {
                CONSOLE_DROPPED.fetch_add(rest.len() as u64, Ordering::Relaxed);
                break;
            }
        }
    }
    CONSOLE_OWNER.store(FREE, Ordering::Release);
    rhea_arch::irq_restore(was);
    true
}

/// Waits (bounded) until the console back end has read everything written: before the
/// domain shuts down, so the last lines are not lost with it.
pub(crate) fn console_flush() {
    let Some((ring, port)) = CONSOLE.get() else {
        return;
    };
    let deadline = crate::interrupts::system_time_ns().saturating_add(CONSOLE_WAIT_NS);
    while !ring.drained() && crate::interrupts::system_time_ns() < deadline {
        hc::evtchn_send(*port);
        hc::sched_yield();
    }
}

/// The console input's interrupt line: the console ring's event channel (domU) or
/// `VIRQ_CONSOLE`'s port (hardware domain); line 0 (none) otherwise.
pub(crate) fn console_rx_line() -> u32 {
    match CONSOLE.get() {
        Some((_, port)) => *port,
        None => DOM0_INPUT_PORT.load(Ordering::Relaxed),
    }
}

/// Drains console input into `sink`; returns (bytes, errors).
pub(crate) fn console_rx_drain(mut sink: impl FnMut(u8)) -> (usize, usize) {
    let mut buf = [0u8; 64];
    let mut total = 0;
    let mut errors = 0;
    loop {
        let n = match CONSOLE.get() {
            Some((ring, port)) => match ring.read(&mut buf) {
                Ok(n) => {
                    if n > 0 {
                        hc::evtchn_send(*port);
                    }
                    n
                }
                Err(_) => {
                    errors += 1;
                    0
                }
            },
            None if DOM0_INPUT_PORT.load(Ordering::Relaxed) != 0 => {
                let rc = hc::console_read(&mut buf);
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
            return (total, errors);
        }
        buf[..n].iter().for_each(|&b| sink(b));
        total += n;
    }
}

/// Xenbus (when xenstore is there) with the netfront driver.
pub(crate) fn devices() -> (Vec<Box<dyn Bus>>, Vec<&'static dyn Driver>) {
    let (Some(xs), Some(host)) = (STORE.get(), HOST.get()) else {
        return (Vec::new(), Vec::new());
    };
    let host: Arc<dyn XenHost> = host.clone();
    // One driver for the whole run: leaked once at boot, like every board's static drivers.
    let netfront: &'static XenNetDriver = Box::leak(Box::new(XenNetDriver::new(
        host,
        xs.clone(),
        NetfrontConfig::default(),
    )));
    (
        alloc::vec![Box::new(XenbusBus::new(xs.clone())) as Box<dyn Bus>],
        alloc::vec![netfront as &'static dyn Driver],
    )
}
