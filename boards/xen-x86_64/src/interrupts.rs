//! Interrupts and time under Xen: the shared-info page, event channels as the interrupt
//! controller, the Xen clock and the single-shot timer. The bookkeeping and arithmetic are
//! `rhea-board-xen-common`'s (host-tested); this module makes the hypercalls.
//!
//! Locks: none. The tables are atomics written at bind time; the upcall path reads them.

use crate::hypercall as hc;
use core::sync::atomic::{AtomicU64, Ordering};
use rhea_board_xen_common::abi;
use rhea_board_xen_common::evtchn::MAX_VCPUS;
use rhea_board_xen_common::evtchn::{AffinityError, EventChannels, EvtchnOps};
use rhea_board_xen_common::shared::{SharedInfo, VcpuInfo, VcpuInfoPage};
use rhea_board_xen_common::steal::RUNSTATE;
use rhea_board_xen_common::time::Snapshot;
use rhea_hal::{
    Clock, CpuId, Instant, InterruptController, IrqLine, OneShotTimer, RouteError, TimeAndIrq,
    Trigger,
};
use rhea_irq::vectors;

/// The shared-info page: a page of the image Xen maps its shared info over.
static SHARED: SharedInfo = SharedInfo::new();
/// Every vCPU's `vcpu_info`, registered by the vCPU itself (`init_this_cpu`).
static VCPU_INFO: VcpuInfoPage = VcpuInfoPage::new();
/// Ports, vectors, owners.
static EVENTS: EventChannels = EventChannels::new();
/// Xen's system time when Rhea's clock started (its zero).
static BOOT_SYSTEM_TIME: AtomicU64 = AtomicU64::new(0);
/// Per vCPU: the last time its clock returned (the clock never goes back on one CPU).
static LAST: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];

/// The vector the timer raises (the runtime's timer vector on x86).
const TIMER_VECTOR: u8 = vectors::LAPIC_TIMER.get();

/// Why bring-up failed.
#[derive(Debug)]
pub enum InitError {
    /// A hypercall failed: which, and Xen's error.
    Hypercall(&'static str, i64),
    /// The clock's parameters could not be read consistently.
    Clock,
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Hypercall(what, rc) => {
                write!(f, "{what} failed: {rc} ({})", abi::errno_name(*rc))
            }
            Self::Clock => f.write_str("the Xen clock's vcpu_time_info never read consistently"),
        }
    }
}

fn check(what: &'static str, rc: i64) -> Result<(), InitError> {
    if rc < 0 {
        Err(InitError::Hypercall(what, rc))
    } else {
        Ok(())
    }
}

/// vCPU `cpu`'s `vcpu_info` (vCPUs beyond `MAX_VCPUS` are not started: `smp.rs`).
fn vcpu_info(cpu: usize) -> &'static VcpuInfo {
    &VCPU_INFO.0[cpu.min(MAX_VCPUS - 1)]
}

fn this_cpu() -> usize {
    rhea_arch::cpu_id().0 as usize
}

/// Maps the shared-info page. Call once on the boot CPU, before anything reads it.
pub(crate) fn map_shared_info() -> Result<(), InitError> {
    check(
        "XENMEM_add_to_physmap(shared_info)",
        hc::map_shared_info(&SHARED),
    )
}

/// The Xen clock.
#[derive(Debug)]
struct XenClock;

impl XenClock {
    fn system_time(cpu: usize) -> u64 {
        // Xen holds the version odd only across a few stores: a million tries is never reached
        // short of a broken hypervisor, and then the last good value stands (LAST).
        let snap = Snapshot::read(&vcpu_info(cpu).time, 1_000_000).unwrap_or_default();
        snap.system_time_at(rhea_arch::read_cycle_counter())
    }
}

impl Clock for XenClock {
    fn now(&self) -> Instant {
        let cpu = this_cpu().min(MAX_VCPUS - 1);
        let ns = Self::system_time(cpu).saturating_sub(BOOT_SYSTEM_TIME.load(Ordering::Relaxed));
        let prev = LAST[cpu].fetch_max(ns, Ordering::Relaxed);
        Instant::from_nanos(ns.max(prev))
    }
}

/// `VCPUOP_set_singleshot_timer` on the calling vCPU.
#[derive(Debug)]
struct XenTimer;

impl OneShotTimer for XenTimer {
    fn arm(&self, deadline: Instant) {
        if deadline == Instant::NEVER {
            self.disarm();
            return;
        }
        let abs = BOOT_SYSTEM_TIME
            .load(Ordering::Relaxed)
            .saturating_add(deadline.as_nanos());
        // Xen refuses only a foreign vCPU or a bad pointer (flags 0: a past deadline fires).
        let rc = hc::set_singleshot_timer(this_cpu(), abs);
        debug_assert!(rc >= 0, "VCPUOP_set_singleshot_timer: {rc}");
    }

    fn disarm(&self) {
        let rc = hc::vcpu_op_plain(abi::vcpu::STOP_SINGLESHOT_TIMER, this_cpu());
        debug_assert!(rc >= 0, "VCPUOP_stop_singleshot_timer: {rc}");
    }
}

/// Event channels as the interrupt controller.
#[derive(Debug)]
struct EventController;

fn port_of(line: IrqLine) -> Result<u32, RouteError> {
    if line.0 == 0 || line.0 as usize >= rhea_board_xen_common::shared::NR_PORTS {
        Err(RouteError::NoSuchLine(line.0))
    } else {
        Ok(line.0)
    }
}

impl InterruptController for EventController {
    fn end_of_interrupt(&self, _vector: u8) {
        // The callback vector bypasses the local APIC: nothing to complete.
    }

    fn route(&self, line: IrqLine, vector: u8, _trigger: Trigger) -> Result<(), RouteError> {
        let port = port_of(line)?;
        self.mask(line)?;
        EVENTS
            .bind(port, vector, 0)
            .map_err(|_| RouteError::BadVector(vector))
    }

    fn unmask(&self, line: IrqLine) -> Result<(), RouteError> {
        let port = port_of(line)?;
        if hc::evtchn_unmask(port) < 0 {
            return Err(RouteError::NoSuchLine(line.0));
        }
        Ok(())
    }

    fn mask(&self, line: IrqLine) -> Result<(), RouteError> {
        let port = port_of(line)?;
        SHARED.evtchn_mask[port as usize / 64].fetch_or(1 << (port % 64), Ordering::AcqRel);
        Ok(())
    }

    fn raise_self(&self, vector: u8) {
        self.send_ipi(CpuId(this_cpu() as u32), vector);
    }

    /// Masks the port while Xen and the tables move it, then unmasks it so that an event
    /// pending on the old vCPU is re-raised on the new one (`EventChannels::set_affinity`).
    fn set_affinity(&self, line: IrqLine, cpu: CpuId) -> Result<(), RouteError> {
        let port = port_of(line)?;
        EVENTS
            .set_affinity(&SHARED, port, cpu.0 as usize, &Hypercalls)
            .map_err(|e| match e {
                AffinityError::Refused(_) => RouteError::Fixed(line.0),
                AffinityError::Bind(_) => RouteError::NoSuchLine(line.0),
            })
    }

    fn send_ipi(&self, cpu: CpuId, vector: u8) {
        if let Some(port) = EVENTS.raise(cpu.0 as usize, vector) {
            hc::evtchn_send(port);
        }
    }

    fn demux(&self, raw: u8, deliver: &mut dyn FnMut(u8)) {
        if raw == vectors::XEN_UPCALL.get() {
            let cpu = this_cpu();
            EVENTS.demux(&SHARED, vcpu_info(cpu), cpu, deliver);
        } else {
            deliver(raw);
        }
    }
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

static CLOCK: XenClock = XenClock;
static TIMER: XenTimer = XenTimer;
static CONTROLLER: EventController = EventController;

/// Boot CPU: the upcall vector, the clock's zero, this vCPU's timer and IPI ports.
pub(crate) fn init() -> Result<TimeAndIrq, InitError> {
    register_vcpu_info(0)?;
    let snap = Snapshot::read(&vcpu_info(0).time, 1_000_000).ok_or(InitError::Clock)?;
    if snap.mul == 0 {
        return Err(InitError::Clock);
    }
    BOOT_SYSTEM_TIME.store(
        snap.system_time_at(rhea_arch::read_cycle_counter()),
        Ordering::Relaxed,
    );
    check(
        "HVMOP_set_param(CALLBACK_IRQ)",
        hc::hvm_set_param(
            abi::hvm::PARAM_CALLBACK_IRQ,
            (abi::hvm::CALLBACK_TYPE_VECTOR << 56) | u64::from(vectors::XEN_UPCALL.get()),
        ),
    )?;
    init_this_cpu(0)?;
    Ok(TimeAndIrq {
        clock: &CLOCK,
        timer: &TIMER,
        controller: &CONTROLLER,
        timer_vector: TIMER_VECTOR,
        cycles_per_second: snap.tsc_hz(),
    })
}

/// Moves vCPU `cpu`'s `vcpu_info` into [`VCPU_INFO`] (on that vCPU), and names its runstate
/// area (steal time; a Xen that refuses it leaves steal unreported for that vCPU, nothing
/// else).
fn register_vcpu_info(cpu: usize) -> Result<(), InitError> {
    check(
        "VCPUOP_register_vcpu_info",
        hc::register_vcpu_info(cpu, vcpu_info(cpu)),
    )?;
    if let Some(area) = RUNSTATE.area(cpu) {
        RUNSTATE.registered(cpu, hc::register_runstate_area(cpu, area));
    }
    Ok(())
}

/// Any vCPU, on itself, interrupts off: its `VIRQ_TIMER` and IPI ports, no periodic timer.
pub(crate) fn init_this_cpu(cpu: usize) -> Result<(), InitError> {
    if cpu != 0 {
        register_vcpu_info(cpu)?;
    }
    let vi = vcpu_info(cpu);
    vi.upcall_mask.store(0, Ordering::Relaxed);
    check(
        "VCPUOP_stop_periodic_timer",
        hc::vcpu_op_plain(abi::vcpu::STOP_PERIODIC_TIMER, cpu),
    )?;
    let timer_port = hc::bind_virq(abi::VIRQ_TIMER, cpu as u32)
        .map_err(|rc| InitError::Hypercall("EVTCHNOP_bind_virq(VIRQ_TIMER)", rc))?;
    let ipi_port =
        hc::bind_ipi(cpu as u32).map_err(|rc| InitError::Hypercall("EVTCHNOP_bind_ipi", rc))?;
    EVENTS
        .bind(timer_port, TIMER_VECTOR, cpu)
        .map_err(|_| InitError::Hypercall("binding VIRQ_TIMER's port", -22))?;
    EVENTS
        .bind_ipi(ipi_port, cpu)
        .map_err(|_| InitError::Hypercall("binding the IPI port", -22))?;
    check("EVTCHNOP_unmask(timer)", hc::evtchn_unmask(timer_port))?;
    check("EVTCHNOP_unmask(ipi)", hc::evtchn_unmask(ipi_port))?;
    Ok(())
}

/// The TSC's frequency as the Xen clock's scaling implies.
pub(crate) fn tsc_hz() -> u64 {
    Snapshot::read(&vcpu_info(0).time, 1_000)
        .unwrap_or_default()
        .tsc_hz()
}

/// Xen's system time now (ns since Xen booted), on this vCPU's clock; 0 before the clock is
/// set up. For deadlines in board code (no monotonic clamp).
pub(crate) fn system_time_ns() -> u64 {
    XenClock::system_time(this_cpu())
}
