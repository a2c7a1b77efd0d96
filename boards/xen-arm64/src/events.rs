//! Xen's event channels as the board's interrupt controller, layered over the GIC
//! (`rhea_board_common_arm::machine::InterruptLayer`).
//!
//! On Arm, Xen signals event channels with one PPI, `GUEST_EVTCHN_PPI` (INTID 31, level): it
//! raises it on a vCPU when `upcall_pending` in that vCPU's `vcpu_info` goes from 0 to 1
//! (`vcpu_mark_events_pending`, xen/arch/arm/domain.c). The shared Arm code keeps the GIC,
//! the virtual timer's PPI and the counter; this layer adds:
//! - the shared-info page (`XENMEM_add_to_physmap`): the pending and mask bitmaps;
//! - each vCPU's `vcpu_info` in [`VCPU_INFO`], registered by the vCPU itself
//!   (`VCPUOP_register_vcpu_info`; the shared page holds vCPU 0's only, on Arm);
//! - PPI 31 routed to [`vectors::XEN_UPCALL`] on every CPU (GIC-acknowledged and
//!   -completed like any PPI); the controller's `demux` turns that vector into the vectors of
//!   this vCPU's pending ports (`EventChannels::demux`, host-tested in
//!   `rhea-board-xen-common`);
//! - IPIs: one port per vCPU (`EVTCHNOP_bind_ipi`); `send_ipi`/`raise_self` set the vector's
//!   bit for the target and notify its port (`EVTCHNOP_send`). SGIs are not used;
//! - device lines: `IrqLine(port)` is an event-channel port (bound to vCPU 0, masked in the
//!   shared page, unmasked with `EVTCHNOP_unmask`); GIC INTID `n` is
//!   `IrqLine(lines::FOREIGN_LINES + n)` and goes to the GIC.
//!
//! Time stays the generic timer's: Xen on Arm has no `VCPUOP_set_singleshot_timer` (see
//! [`hc::register_vcpu_info`]), and the guest's virtual timer is the real one, so
//! `VIRQ_TIMER` is not bound.
//!
//! Locks: none here. The tables are atomics written when a port is bound and read by the
//! upcall; the GIC's own lock is taken by `route_ppi_here` (bring-up only) and by GIC-line
//! routing, as on every Arm board.

use crate::hypercall as hc;
use core::fmt::Write;
use core::sync::atomic::{AtomicU32, Ordering};
use rhea_board_common_arm::interrupts::{GicController, route_ppi_here};
use rhea_board_common_arm::machine::InterruptLayer;
use rhea_board_xen_common::abi;
use rhea_board_xen_common::evtchn::{AffinityError, EventChannels, EvtchnOps, MAX_VCPUS};
use rhea_board_xen_common::lines::{self, Line};
use rhea_board_xen_common::shared::{SharedInfo, VcpuInfo, VcpuInfoPage};
use rhea_board_xen_common::steal::RUNSTATE;
use rhea_hal::{CpuId, InterruptController, IrqLine, RouteError, Trigger};
use rhea_irq::vectors;

/// The shared-info page: a page of the image Xen maps its shared info over.
static SHARED: SharedInfo = SharedInfo::new();
/// Every vCPU's `vcpu_info`, registered by the vCPU itself ([`bring_up`]).
static VCPU_INFO: VcpuInfoPage = VcpuInfoPage::new();
/// Ports, vectors, owners, software vectors.
static EVENTS: EventChannels = EventChannels::new();
/// The event-channel PPI the devicetree's `hypervisor` node names (0: no node, or no usable
/// `interrupts`; then `GUEST_EVTCHN_PPI`).
static DEVICETREE_INTID: AtomicU32 = AtomicU32::new(0);
/// The controller the runtime uses, once [`init`] ran.
static CONTROLLER: spin::Once<EventController> = spin::Once::new();

/// The vector the event-channel PPI is routed to.
const UPCALL_VECTOR: u8 = vectors::XEN_UPCALL.get();

/// The layer, for `arm_board!`.
pub(crate) const LAYER: InterruptLayer = InterruptLayer {
    init,
    init_cpu: init_secondary,
    gic_lines: lines::FOREIGN_LINES,
};

/// Records the event-channel PPI the devicetree names (early init, before [`init`]).
pub(crate) fn set_devicetree_intid(intid: u32) {
    DEVICETREE_INTID.store(intid, Ordering::Relaxed);
}

/// The event-channel PPI's INTID and where it comes from.
fn upcall_intid() -> (u32, &'static str) {
    match DEVICETREE_INTID.load(Ordering::Relaxed) {
        0 => (
            abi::arm::GUEST_EVTCHN_PPI,
            "GUEST_EVTCHN_PPI: no hypervisor node",
        ),
        intid => (intid, "devicetree hypervisor node"),
    }
}

fn this_cpu() -> usize {
    rhea_arch::cpu_id().0 as usize
}

/// vCPU `cpu`'s `vcpu_info` (CPUs beyond `MAX_VCPUS` fail [`bring_up`] and stay out).
fn vcpu_info(cpu: usize) -> &'static VcpuInfo {
    &VCPU_INFO.0[cpu.min(MAX_VCPUS - 1)]
}

/// Prints a failed hypercall in full and returns it as the layer's error.
fn fail(what: &'static str, rc: i64) -> &'static str {
    let _ = writeln!(
        hc::Console,
        "rhea: xen: {what} failed: {rc} ({})",
        abi::errno_name(rc)
    );
    what
}

/// A hypercall's result: negative is a failure ([`fail`]).
fn check(what: &'static str, rc: i64) -> Result<(), &'static str> {
    if rc < 0 { Err(fail(what, rc)) } else { Ok(()) }
}

/// Boot CPU, after the GIC and the timer (IRQs masked): the shared-info page, then this
/// vCPU's part; returns the controller.
fn init(gic: &'static GicController) -> Result<&'static dyn InterruptController, &'static str> {
    check(
        "XENMEM_add_to_physmap(XENMAPSPACE_shared_info)",
        hc::map_shared_info(&SHARED),
    )?;
    let controller = CONTROLLER.call_once(|| EventController { gic });
    let port = bring_up(0)?;
    // PV devices (console ring, grant table, xenstore) when a toolstack made the domain; the
    // rings sit in the magic-page window the board added to the memory map as shared memory,
    // which the kernel mapped like RAM.
    let magic = abi::arm::GUEST_MAGIC;
    rhea_board_xen_common::pv::init(
        &hc::HYPERVISOR,
        &|phys, len| phys >= magic.start && phys.saturating_add(len) <= magic.end,
        false,
    );
    let (intid, source) = upcall_intid();
    let _ = writeln!(
        hc::Console,
        "rhea: xen: event channels: shared info at {:#x}, upcall INTID {intid} ({source}) -> \
         vector {UPCALL_VECTOR:#x}; IPIs through event channels (EVTCHNOP_bind_ipi per vCPU, \
         cpu0 port {port}); timer: generic timer (Xen on Arm has no \
         VCPUOP_set_singleshot_timer)",
        &raw const SHARED as u64,
    );
    Ok(controller)
}

/// Each vCPU, on itself, IRQs masked: registers its `vcpu_info`, binds its IPI port and routes
/// the event-channel PPI on this CPU. Returns the IPI port.
fn bring_up(cpu: usize) -> Result<u32, &'static str> {
    if cpu >= MAX_VCPUS {
        return Err("more vCPUs than the event-channel tables track");
    }
    check(
        "VCPUOP_register_vcpu_info",
        hc::register_vcpu_info(cpu, vcpu_info(cpu)),
    )?;
    // Steal time: a Xen that refuses the runstate area leaves it unreported, nothing else.
    if let Some(area) = RUNSTATE.area(cpu) {
        RUNSTATE.registered(cpu, hc::register_runstate_area(cpu, area));
    }
    // Arm's Xen ignores the PV upcall mask; clear it as a guest that handles upcalls.
    vcpu_info(cpu).upcall_mask.store(0, Ordering::Relaxed);
    let port = hc::bind_ipi(cpu as u32).map_err(|rc| fail("EVTCHNOP_bind_ipi", rc))?;
    EVENTS
        .bind_ipi(port, cpu)
        .map_err(|_| "EVTCHNOP_bind_ipi gave a port beyond the 2-level ABI")?;
    check("EVTCHNOP_unmask(IPI port)", hc::evtchn_unmask(port))?;
    // Last: from here the PPI reaches this CPU (Xen raised it on registration already, with
    // every pending-word bit set; the first upcall clears them).
    route_ppi_here(upcall_intid().0, UPCALL_VECTOR)
        .map_err(|_| "cannot route the event-channel PPI")?;
    Ok(port)
}

/// A secondary CPU's part ([`InterruptLayer::init_cpu`]; see [`bring_up`]).
fn init_secondary(cpu: usize) -> Result<(), &'static str> {
    bring_up(cpu).map(|_| ())
}

/// The GIC's answer for a line of ours: a missing line is named as the caller numbered it.
fn gic_result(line: IrqLine, r: Result<(), RouteError>) -> Result<(), RouteError> {
    r.map_err(|e| match e {
        RouteError::NoSuchLine(_) => RouteError::NoSuchLine(line.0),
        e => e,
    })
}

/// The event-channel hypercalls `EventChannels::set_affinity` makes.
#[derive(Debug)]
struct Hypercalls;

impl EvtchnOps for Hypercalls {
    fn bind_vcpu(&self, port: u32, cpu: u32) -> Result<(), i64> {
        match hc::bind_vcpu(port, cpu) {
            e if e < 0 => Err(e),
            _ => Ok(()),
        }
    }

    fn unmask(&self, port: u32) -> Result<(), i64> {
        match hc::evtchn_unmask(port) {
            e if e < 0 => Err(e),
            _ => Ok(()),
        }
    }
}

/// Event channels over the GIC.
#[derive(Debug)]
struct EventController {
    gic: &'static GicController,
}

impl InterruptController for EventController {
    /// Completes the GIC interrupt being handled (the event-channel PPI for an upcall).
    fn end_of_interrupt(&self, vector: u8) {
        self.gic.end_of_interrupt(vector);
    }

    fn route(&self, line: IrqLine, vector: u8, trigger: Trigger) -> Result<(), RouteError> {
        match lines::classify(line.0) {
            Some(Line::Port(port)) => {
                self.mask(line)?;
                EVENTS
                    .bind(port, vector, 0)
                    .map_err(|_| RouteError::BadVector(vector))
            }
            Some(Line::Foreign(intid)) => {
                gic_result(line, self.gic.route(IrqLine(intid), vector, trigger))
            }
            None => Err(RouteError::NoSuchLine(line.0)),
        }
    }

    fn unmask(&self, line: IrqLine) -> Result<(), RouteError> {
        match lines::classify(line.0) {
            Some(Line::Port(port)) => {
                if hc::evtchn_unmask(port) < 0 {
                    return Err(RouteError::NoSuchLine(line.0));
                }
                Ok(())
            }
            Some(Line::Foreign(intid)) => gic_result(line, self.gic.unmask(IrqLine(intid))),
            None => Err(RouteError::NoSuchLine(line.0)),
        }
    }

    fn mask(&self, line: IrqLine) -> Result<(), RouteError> {
        match lines::classify(line.0) {
            Some(Line::Port(port)) => {
                SHARED.evtchn_mask[port as usize / 64].fetch_or(1 << (port % 64), Ordering::AcqRel);
                Ok(())
            }
            Some(Line::Foreign(intid)) => gic_result(line, self.gic.mask(IrqLine(intid))),
            None => Err(RouteError::NoSuchLine(line.0)),
        }
    }

    fn raise_self(&self, vector: u8) {
        self.send_ipi(CpuId(this_cpu() as u32), vector);
    }

    /// Event channels move with `EVTCHNOP_bind_vcpu`, masked meanwhile and then unmasked so
    /// that an event pending on the old vCPU is re-raised on the new one
    /// (`EventChannels::set_affinity`); GIC lines stay where they are.
    fn set_affinity(&self, line: IrqLine, cpu: CpuId) -> Result<(), RouteError> {
        let Some(Line::Port(port)) = lines::classify(line.0) else {
            return Err(RouteError::Fixed(line.0));
        };
        EVENTS
            .set_affinity(&SHARED, port, cpu.0 as usize, &Hypercalls)
            .map_err(|e| match e {
                AffinityError::Refused(_) => RouteError::Fixed(line.0),
                AffinityError::Bind(_) => RouteError::NoSuchLine(line.0),
            })
    }

    /// Sets `vector` for `cpu` and notifies its IPI port. The fence orders this CPU's earlier
    /// stores (the scheduler's state, the vector's bit) before the target can take the upcall.
    fn send_ipi(&self, cpu: CpuId, vector: u8) {
        if let Some(port) = EVENTS.raise(cpu.0 as usize, vector) {
            rhea_arch::memory_fence();
            let _ = hc::evtchn_send(port);
        }
    }

    fn demux(&self, raw: u8, deliver: &mut dyn FnMut(u8)) {
        if raw == UPCALL_VECTOR {
            let cpu = this_cpu();
            EVENTS.demux(&SHARED, vcpu_info(cpu), cpu, deliver);
        } else {
            deliver(raw);
        }
    }
}
