//! Interrupts and time on an Arm board: the GIC (v2 or v3, as the devicetree says) through the
//! `arm-gic` crate, the virtual generic timer as the one-shot timer, and `CNTVCT_EL0` as the
//! clock.
//!
//! The runtime's IRQ registry speaks x86-style vectors (`rhea_irq::vectors`: devices
//! 0x30–0xdf, the timer 0xef); the GIC speaks interrupt IDs. [`GicController`] is the
//! translation: `route(line = INTID, vector)` records INTID→vector (and configures the INTID:
//! trigger, priority, target CPU), the IRQ exception path ([`acknowledge`]) reads the
//! acknowledge register, translates, and hands the vector to the runtime, and
//! `end_of_interrupt` writes the end-of-interrupt register for the INTID it acknowledged.
//! Interrupts do not nest, so one "active INTID" per CPU suffices. Spurious acknowledges (INTID
//! 1020–1023) and INTIDs nobody routed are counted and completed here, never handed on.
//! `raise_self(vector)` sends a software-generated interrupt (SGI) to this CPU and
//! `send_ipi(cpu, vector)` to another (the reschedule IPI); each vector sent this way gets one
//! of the 16 SGIs on first use. All 16 SGIs are configured and enabled on every CPU when its
//! interface comes up, so allocating one touches no GIC register.
//!
//! SMP: every CPU brings up its own CPU interface (GICv2: the banked `GICC_*` and the banked
//! SGI/PPI registers of the distributor; GICv3: its redistributor — found by the MPIDR in
//! `GICR_TYPER` — and its `ICC_*` system registers), its SGIs and the timer's PPI
//! ([`init_secondary_cpu`] on secondaries). Per CPU, indexed by `rhea_arch::cpu_id()`: the
//! INTID being handled (`ACTIVE`), the CPU's MPIDR (a GICv3 SGI's target), its GICv2 CPU
//! interface mask (a GICv2 SGI's target list) and its GICv3 redistributor index. SGIs are sent
//! without the lock: on GICv3 through `ICC_SGI1R_EL1`, on GICv2 by one write of `GICD_SGIR`.
//!
//! A board may put its own controller over this one ([`crate::machine::InterruptLayer`]:
//! xen-arm64's event channels, which arrive on one PPI routed with [`route_ppi_here`] on every
//! CPU); the runtime then talks to that controller, which delegates GIC lines here.
//!
//! Lock: the GIC distributor sits behind `GIC`, a spin lock taken with IRQs masked (leaf). The
//! acknowledge and end-of-interrupt path does not take it: on GICv3 those are system registers
//! (`ICC_IAR1_EL1`, `ICC_EOIR1_EL1`), on GICv2 the CPU interface's `GICC_IAR`/`GICC_EOIR`,
//! banked per CPU and written here directly (the driver's methods for them need the lock).
#![allow(
    unsafe_code,
    reason = "GIC register frames and their driver's constructors; each use has a SAFETY note"
)]

use crate::machine::{ArmBoard, ConsoleWriter, FACTS};
use crate::platform::{Gic, MmioRange, Trigger as DtTrigger};
use arm_gic::gicv2::GicV2;
use arm_gic::gicv3::registers::{Gicd, GicrSgi};
use arm_gic::gicv3::{GicCpuInterface, GicV3, SgiTarget, SgiTargetGroup};
use arm_gic::{IntId, InterruptGroup, Trigger as GicTrigger, UniqueMmioPointer};
use core::fmt::Write;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use rhea_arch::sync::{IrqGuard, IrqsOff, SpinLock};
use rhea_hal::{InterruptController, IrqLine, OneShotTimer, RouteError, TimeAndIrq, Trigger};
use rhea_irq::vectors::{self, Vector};
use rhea_timers::{ClockConversion, CycleCounter, Timebase, TscClock};
use spin::Once;

/// The timer's vector in the runtime's plan (`rhea_irq::vectors::LAPIC_TIMER`, 0xef: the
/// per-CPU timer's slot whatever the architecture).
const TIMER_VECTOR: Vector = vectors::LAPIC_TIMER;
/// INTIDs below this are SGIs, PPIs and SPIs; 1020–1023 are special (spurious).
const MAX_INTID: usize = 1020;
/// No interrupt being handled.
const NO_INTID: u32 = u32::MAX;
/// Priority of every routed interrupt: they do not nest, so one level is enough; in the middle
/// of the non-secure range so GICs implementing few priority bits still see it below the mask.
const PRIORITY: u8 = 0xa0;
/// One CPU's GICv3 redistributor: RD and SGI frames (2 × 64 KiB), twice that with GICv4's VLPI
/// frames (`GICR_TYPER.VLPIS`).
const GICR_STRIDE_V3: u64 = 2 * 64 * 1024;
const GICR_STRIDE_V4: u64 = 4 * 64 * 1024;
/// `GICR_TYPER` (IHI 0069H §12.11.35), in the RD frame.
const GICR_TYPER: u64 = 0x8;
/// The per-CPU tables' size (`rhea_arch::MAX_CPUS`).
const MAX_CPUS: usize = rhea_arch::MAX_CPUS;
/// Not a CPU's MPIDR (bits outside the affinity fields).
const NO_MPIDR: u64 = u64::MAX;
/// The GICv2 CPU interface's acknowledge and end-of-interrupt registers (IHI 0048B §4.4).
const GICC_IAR: u64 = 0x0c;
const GICC_EOIR: u64 = 0x10;
/// The GICv2 distributor's target registers, one byte per INTID (IHI 0048B §4.3.12).
const GICD_ITARGETSR: u64 = 0x800;
/// The GICv2 distributor's software-generated interrupt register (IHI 0048B §4.3.15):
/// filter in 25:24, CPU target list in 23:16, NSATT in 15, SGI in 3:0.
const GICD_SGIR: u64 = 0xf00;

/// A GIC driver owned by one lock. The drivers hold raw pointers to their register frames,
/// which makes them neither `Send` nor `Sync`.
struct Owned<T>(T);

// SAFETY: the frames are device memory mapped for the whole run; the driver is only used from
// behind `GIC`'s lock (IRQs masked), so no two CPUs or contexts use it at once.
unsafe impl<T> Send for Owned<T> {}

enum Driver {
    V2 {
        /// Lock: interrupts off (taken from handlers too, inside [`with_gic`]); a leaf.
        gic: SpinLock<Owned<GicV2<'static>>, IrqsOff>,
        /// The CPU interface (GICC) and distributor (GICD) bases, for the lock-free hot path and
        /// the target registers the driver does not cover.
        gicc: u64,
        gicd: u64,
    },
    V3 {
        /// Lock: as for GICv2.
        gic: SpinLock<Owned<GicV3<'static>>, IrqsOff>,
        /// How many redistributors the driver was given (mapped).
        redistributors: usize,
    },
}

static GIC: Once<Driver> = Once::new();
/// INTID → vector (0: not routed).
static VECTOR_OF: [AtomicU8; MAX_INTID] = [const { AtomicU8::new(0) }; MAX_INTID];
/// SGI → vector it raises (0: free).
static SGI_VECTOR: [AtomicU8; 16] = [const { AtomicU8::new(0) }; 16];
/// The trigger the devicetree gives an INTID, where it gives one (0 unknown, 1 edge, 2 level):
/// the tree is the authority on how a line signals.
static FIRMWARE_TRIGGER: [AtomicU8; MAX_INTID] = [const { AtomicU8::new(0) }; MAX_INTID];
/// Per CPU: the raw acknowledge value being handled.
static ACTIVE: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(NO_INTID) }; MAX_CPUS];
/// Per CPU: its MPIDR affinity, once its interface is up (the target of a GICv3 SGI).
static CPU_MPIDR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(NO_MPIDR) }; MAX_CPUS];
/// Per CPU: its GICv2 CPU interface bit (the target list of a GICv2 SGI; 0 unknown).
static V2_TARGET: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];
/// Per CPU: the index of its GICv3 redistributor.
static REDISTRIBUTOR: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];

/// This CPU's index, for the per-CPU tables.
fn this_cpu() -> usize {
    (rhea_arch::cpu_id().0 as usize).min(MAX_CPUS - 1)
}

/// This CPU's MPIDR affinity fields.
fn this_mpidr() -> u64 {
    rhea_arch::generic_timer::mpidr() & rhea_arch::MPIDR_AFFINITY_MASK
}
/// The virtual timer's INTID.
static TIMER_INTID: AtomicU32 = AtomicU32::new(NO_INTID);
/// Acknowledges that returned a special INTID (1020–1023), and INTIDs nobody routed.
static SPURIOUS: AtomicU64 = AtomicU64::new(0);
static UNROUTED: AtomicU64 = AtomicU64::new(0);

/// Spurious acknowledges and unrouted interrupts seen so far.
pub fn spurious_counts() -> (u64, u64) {
    (
        SPURIOUS.load(Ordering::Relaxed),
        UNROUTED.load(Ordering::Relaxed),
    )
}

fn with_gic<R>(f: impl FnOnce(&Driver) -> R) -> Option<R> {
    let _irqs = IrqGuard::new();
    GIC.get().map(f)
}

/// The `IntId` of a plain interrupt number (no source-CPU bits).
fn intid(n: u32) -> Option<IntId> {
    match n {
        0..16 => Some(IntId::sgi(n)),
        16..32 => Some(IntId::ppi(n - 16)),
        32..1020 => Some(IntId::spi(n - 32)),
        _ => None,
    }
}

fn read32(addr: u64) -> u32 {
    // SAFETY: only called with GIC register addresses mapped as device memory by `init`.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

fn write32(addr: u64, value: u32) {
    // SAFETY: as in `read32`.
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
}

/// The IRQ exception's first step (registered with `rhea_arch::set_interrupt_source`):
/// acknowledge, translate to a vector. RT: a few register accesses, no lock.
fn acknowledge() -> Option<u8> {
    let raw = match GIC.get()? {
        Driver::V2 { gicc, .. } => read32(gicc + GICC_IAR),
        Driver::V3 { .. } => {
            match GicCpuInterface::get_and_acknowledge_interrupt(InterruptGroup::Group1) {
                Some(id) => u32::from(id),
                None => 1023,
            }
        }
    };
    // GICv2 puts the source CPU of an SGI in bits 12:10; the INTID is bits 9:0.
    let id = raw & 0x3ff;
    if id as usize >= MAX_INTID {
        SPURIOUS.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    if id == TIMER_INTID.load(Ordering::Relaxed) && rhea_arch::generic_timer::has_fired() {
        // The timer's output is level: disable it now that it fired, so that the line drops;
        // the runtime re-arms it for its next deadline. (An acknowledge without the condition
        // met — the deadline moved after the interrupt was signalled — leaves it armed.)
        rhea_arch::generic_timer::disarm();
    }
    let active = &ACTIVE[this_cpu()];
    active.store(raw, Ordering::Relaxed);
    match VECTOR_OF[id as usize].load(Ordering::Relaxed) {
        0 => {
            UNROUTED.fetch_add(1, Ordering::Relaxed);
            end(raw);
            active.store(NO_INTID, Ordering::Relaxed);
            None
        }
        v => Some(v),
    }
}

/// Writes the end-of-interrupt register for the acknowledge value `raw`.
fn end(raw: u32) {
    match GIC.get() {
        Some(Driver::V2 { gicc, .. }) => write32(gicc + GICC_EOIR, raw),
        Some(Driver::V3 { .. }) => {
            if let Some(id) = intid(raw & 0x3ff) {
                GicCpuInterface::end_interrupt(id, InterruptGroup::Group1);
            }
        }
        None => {}
    }
}

/// The GIC as the runtime's [`InterruptController`].
#[derive(Debug)]
pub struct GicController;

static CONTROLLER: GicController = GicController;

impl GicController {
    fn configure(&self, id: u32, trigger: GicTrigger) -> Result<(), RouteError> {
        let int = intid(id).ok_or(RouteError::NoSuchLine(id))?;
        with_gic(|d| match d {
            Driver::V2 { gic, gicd, .. } => {
                let mut g = gic.lock();
                g.0.set_interrupt_priority(int, PRIORITY);
                if id >= 16 {
                    g.0.set_trigger(int, trigger);
                }
                if id >= 32 {
                    // Target this CPU: the banked ITARGETSR0 byte says which CPU interface we
                    // are (IHI 0048B §4.3.12). Byte access is architected for this register.
                    let me = read32(gicd + GICD_ITARGETSR) & 0xff;
                    let addr = gicd + GICD_ITARGETSR + u64::from(id);
                    // SAFETY: a byte of the distributor's target registers, mapped by `init`.
                    unsafe { core::ptr::write_volatile(addr as *mut u8, me.max(1) as u8) };
                }
                Ok(())
            }
            Driver::V3 { gic, .. } => {
                let mut g = gic.lock();
                let cpu = (id < 32).then(|| REDISTRIBUTOR[this_cpu()].load(Ordering::Relaxed));
                let ok = g.0.set_interrupt_priority(int, cpu, PRIORITY).is_ok()
                    && (id < 16 || g.0.set_trigger(int, cpu, trigger).is_ok())
                    && (id < 32
                        || g.0
                            .distributor()
                            .set_routing(int, Some(this_mpidr()))
                            .is_ok());
                if ok {
                    Ok(())
                } else {
                    Err(RouteError::NoSuchLine(id))
                }
            }
        })
        .ok_or(RouteError::NoSuchLine(id))?
    }

    fn enable(&self, id: u32, enable: bool) -> Result<(), RouteError> {
        let int = intid(id).ok_or(RouteError::NoSuchLine(id))?;
        with_gic(|d| match d {
            Driver::V2 { gic, .. } => gic.lock().0.enable_interrupt(int, enable).is_ok(),
            Driver::V3 { gic, .. } => gic
                .lock()
                .0
                .enable_interrupt(
                    int,
                    (id < 32).then(|| REDISTRIBUTOR[this_cpu()].load(Ordering::Relaxed)),
                    enable,
                )
                .is_ok(),
        })
        .filter(|ok| *ok)
        .map(|_| ())
        .ok_or(RouteError::NoSuchLine(id))
    }

    /// The SGI that raises `vector`, allocated on first use. Every SGI is already configured
    /// and enabled on every CPU, so this only records the mapping. RT: at most 16 steps.
    fn sgi_for(&self, vector: u8) -> Option<u32> {
        for (sgi, slot) in SGI_VECTOR.iter().enumerate() {
            match slot.compare_exchange(0, vector, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    VECTOR_OF[sgi].store(vector, Ordering::Relaxed);
                    return Some(sgi as u32);
                }
                Err(v) if v == vector => return Some(sgi as u32),
                Err(_) => {}
            }
        }
        None
    }

    /// Sends SGI `sgi` to the GICv3 CPU with affinity `mpidr`.
    fn send_sgi_v3(sgi: u32, mpidr: u64) {
        let aff0 = mpidr & 0xff;
        if aff0 >= 16 {
            // The target list covers Aff0 0..15; higher ones need the range selector, which
            // no machine Rhea runs on uses.
            return;
        }
        let _ = GicCpuInterface::send_sgi(
            IntId::sgi(sgi),
            SgiTarget::List {
                affinity3: ((mpidr >> 32) & 0xff) as u8,
                affinity2: ((mpidr >> 16) & 0xff) as u8,
                affinity1: ((mpidr >> 8) & 0xff) as u8,
                target_list: 1 << aff0,
            },
            SgiTargetGroup::CurrentGroup1,
        );
    }
}

impl InterruptController for GicController {
    fn end_of_interrupt(&self, _vector: u8) {
        let raw = ACTIVE[this_cpu()].swap(NO_INTID, Ordering::Relaxed);
        if raw != NO_INTID {
            end(raw);
        }
    }

    fn route(&self, line: IrqLine, vector: u8, trigger: Trigger) -> Result<(), RouteError> {
        let v = Vector::new(vector).ok_or(RouteError::BadVector(vector))?;
        let id = line.0;
        if !(16..MAX_INTID as u32).contains(&id) {
            return Err(RouteError::NoSuchLine(id));
        }
        let trigger = match FIRMWARE_TRIGGER[id as usize].load(Ordering::Relaxed) {
            1 => GicTrigger::Edge,
            2 => GicTrigger::Level,
            _ => match trigger {
                Trigger::Edge => GicTrigger::Edge,
                Trigger::LevelLow => GicTrigger::Level,
            },
        };
        self.enable(id, false)?;
        self.configure(id, trigger)?;
        VECTOR_OF[id as usize].store(v.get(), Ordering::Relaxed);
        Ok(())
    }

    fn unmask(&self, line: IrqLine) -> Result<(), RouteError> {
        self.enable(line.0, true)
    }

    fn mask(&self, line: IrqLine) -> Result<(), RouteError> {
        self.enable(line.0, false)
    }

    fn raise_self(&self, vector: u8) {
        let Some(sgi) = self.sgi_for(vector) else {
            return;
        };
        match GIC.get() {
            // Filter 0b10: this CPU only. NSATT as the driver sets it (Group 1).
            Some(Driver::V2 { gicd, .. }) => {
                write32(gicd + GICD_SGIR, (0b10 << 24) | (1 << 15) | sgi);
            }
            Some(Driver::V3 { .. }) => Self::send_sgi_v3(sgi, this_mpidr()),
            None => {}
        }
    }

    /// An SGI to CPU `cpu`; nothing if its interface is not up. The barrier makes this CPU's
    /// earlier stores (the scheduler's state) visible before the target can take the SGI: a
    /// `GICD_SGIR` write or an `ICC_SGI1R_EL1` write is not ordered after them otherwise.
    fn send_ipi(&self, cpu: rhea_hal::CpuId, vector: u8) {
        let Some(sgi) = self.sgi_for(vector) else {
            return;
        };
        let cpu = cpu.0 as usize;
        match GIC.get() {
            Some(Driver::V2 { gicd, .. }) => {
                let target = V2_TARGET.get(cpu).map_or(0, |t| t.load(Ordering::Relaxed));
                if target != 0 {
                    rhea_arch::memory_fence();
                    // Filter 0b00: the target list.
                    write32(
                        gicd + GICD_SGIR,
                        (u32::from(target) << 16) | (1 << 15) | sgi,
                    );
                }
            }
            Some(Driver::V3 { .. }) => {
                let mpidr = CPU_MPIDR
                    .get(cpu)
                    .map_or(NO_MPIDR, |m| m.load(Ordering::Relaxed));
                if mpidr != NO_MPIDR {
                    rhea_arch::memory_fence();
                    Self::send_sgi_v3(sgi, mpidr);
                }
            }
            None => {}
        }
    }
}

/// `CNTVCT_EL0`.
#[derive(Debug)]
pub struct VirtualCounter;

impl CycleCounter for VirtualCounter {
    fn read(&self) -> u64 {
        rhea_arch::read_cycle_counter()
    }
}

/// The EL1 virtual timer as a one-shot timer on the clock's timebase.
#[derive(Debug)]
pub struct VirtualTimer {
    timebase: Timebase,
}

impl OneShotTimer for VirtualTimer {
    fn arm(&self, deadline: rhea_hal::Instant) {
        rhea_arch::generic_timer::arm(self.timebase.counter_at(deadline));
    }

    fn disarm(&self) {
        rhea_arch::generic_timer::disarm();
    }
}

static CLOCK: Once<TscClock<VirtualCounter>> = Once::new();
static TIMER: Once<VirtualTimer> = Once::new();

/// Why interrupt and time bring-up failed.
#[derive(Debug)]
pub enum InitError {
    /// Early init did not run (no devicetree facts).
    NoDevicetree,
    /// Neither `CNTFRQ_EL0` nor the devicetree gives the counter's frequency.
    NoCounterFrequency,
    /// A GIC register frame could not be mapped.
    Map(MmioRange),
    /// The GIC did not accept its configuration.
    Gic(&'static str),
    /// An interrupt could not be routed.
    Route(RouteError),
    /// The board's interrupt layer ([`crate::machine::InterruptLayer`]) did not come up.
    Layer(&'static str),
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoDevicetree => f.write_str("no devicetree facts (early init did not run)"),
            Self::NoCounterFrequency => f.write_str(
                "the counter frequency is unknown: CNTFRQ_EL0 is 0 and the timer node has no \
                 clock-frequency",
            ),
            Self::Map(r) => write!(
                f,
                "cannot map the GIC registers at {:#x} ({} bytes)",
                r.base, r.len
            ),
            Self::Gic(why) => write!(f, "GIC: {why}"),
            Self::Route(e) => write!(f, "cannot route an interrupt: {e}"),
            Self::Layer(why) => write!(f, "the board's interrupt layer: {why}"),
        }
    }
}

fn map(map_mmio: &dyn Fn(u64, u64) -> bool, r: MmioRange) -> Result<u64, InitError> {
    if map_mmio(r.base, r.len) {
        Ok(r.base)
    } else {
        Err(InitError::Map(r))
    }
}

/// Brings up interrupts and time on the boot CPU (IRQs stay masked) and prints what it chose.
/// `map_mmio` identity-maps a device range.
pub fn init_interrupts_and_time(
    board: &'static ArmBoard,
    boot_cycles: u64,
    map_mmio: &dyn Fn(u64, u64) -> bool,
) -> Result<TimeAndIrq, InitError> {
    let facts = FACTS.get().ok_or(InitError::NoDevicetree)?;
    let p = &facts.platform;

    // 1. The GIC, everything masked until routed.
    let version = match p.gic {
        Gic::V2 {
            distributor,
            cpu_interface,
        } => {
            let gicd = map(map_mmio, distributor)?;
            let gicc = map(map_mmio, cpu_interface)?;
            // SAFETY: both frames were just mapped as device memory, and this is the only
            // driver instance (`GIC` is set once, here).
            let mut gic = unsafe { GicV2::new(gicd as *mut _, gicc as *mut _) };
            gic.setup();
            if gic.typer().has_security_extension() {
                // Entered non-secure (the boot protocol's EL2/EL1) on a GIC with two security
                // states: the non-secure view of GICD_CTLR has its enable in bit 0, which the
                // driver calls EnableGrp0 (IHI 0048B §4.3.1).
                gic.enable_group0(true);
            }
            gic.enable_all_interrupts(false);
            GIC.call_once(|| Driver::V2 {
                gic: SpinLock::new(Owned(gic)),
                gicc,
                gicd,
            });
            "GICv2"
        }
        Gic::V3 {
            distributor,
            redistributors,
        } => {
            let gicd = map(map_mmio, distributor)?;
            // One redistributor per CPU the run uses, at most what the region holds.
            let cpus = crate::smp::cpu_count() as u64;
            let gicr = map(
                map_mmio,
                MmioRange {
                    base: redistributors.base,
                    len: redistributors.len.min(cpus * GICR_STRIDE_V4),
                },
            )?;
            let stride = if read32(gicr + GICR_TYPER) & (1 << 1) != 0 {
                GICR_STRIDE_V4
            } else {
                GICR_STRIDE_V3
            };
            let count = cpus.min(redistributors.len / stride).max(1) as usize;
            let (Some(gicd), Some(gicr)) = (
                NonNull::new(gicd as *mut Gicd),
                NonNull::new(gicr as *mut GicrSgi),
            ) else {
                return Err(InitError::Gic("a register frame at address 0"));
            };
            // SAFETY: the distributor and `count` redistributors' frames were just mapped as
            // device memory; this is the only driver instance.
            let mut gic = unsafe { GicV3::new(UniqueMmioPointer::new(gicd), gicr, count) }
                .map_err(|_| InitError::Gic("unknown redistributor frame layout"))?;
            let me = redistributor_of(&mut gic, count, this_mpidr())
                .ok_or(InitError::Gic("no redistributor for the boot CPU's MPIDR"))?;
            REDISTRIBUTOR[0].store(me, Ordering::Relaxed);
            gic.setup(me);
            GicCpuInterface::set_priority_mask(0xff);
            gic.enable_all_interrupts(false);
            GIC.call_once(|| Driver::V3 {
                gic: SpinLock::new(Owned(gic)),
                redistributors: count,
            });
            "GICv3"
        }
    };
    // This CPU's SGIs and its identity for others' SGIs (the timer's PPI is routed below).
    init_private(None);
    if let Some(uart) = &p.uart {
        FIRMWARE_TRIGGER[uart.interrupt.intid as usize % MAX_INTID].store(
            match uart.interrupt.trigger {
                DtTrigger::Edge => 1,
                DtTrigger::Level => 2,
            },
            Ordering::Relaxed,
        );
    }

    // 2. The clock: the virtual counter, counted from the first instruction at EL1.
    let hz = match rhea_arch::generic_timer::frequency_hz() {
        0 => p.timer_hz.map_or(0, u64::from),
        hz => hz,
    };
    let conversion = ClockConversion::from_hz(hz).map_err(|_| InitError::NoCounterFrequency)?;
    let clock = CLOCK.call_once(|| TscClock::with_origin(VirtualCounter, conversion, boot_cycles));

    // 3. The one-shot timer: the virtual timer's PPI routed to the timer vector.
    rhea_arch::generic_timer::disarm();
    let timer = TIMER.call_once(|| VirtualTimer {
        timebase: clock.timebase(),
    });
    let timer_intid = p.virtual_timer.intid;
    TIMER_INTID.store(timer_intid, Ordering::Relaxed);
    FIRMWARE_TRIGGER[timer_intid as usize].store(2, Ordering::Relaxed);
    CONTROLLER
        .route(IrqLine(timer_intid), TIMER_VECTOR.get(), Trigger::LevelLow)
        .map_err(InitError::Route)?;
    CONTROLLER
        .unmask(IrqLine(timer_intid))
        .map_err(InitError::Route)?;
    rhea_arch::set_interrupt_source(acknowledge);

    let mut w = ConsoleWriter(board);
    let _ = writeln!(
        w,
        "rhea: devicetree at {:#x} ({} bytes){}{}",
        facts.dtb,
        facts.dtb_bytes,
        if p.model.is_some() { ": " } else { "" },
        p.model.unwrap_or("")
    );
    let _ = write!(
        w,
        "rhea: time: counter {} kHz ({}); exit: ",
        hz / 1000,
        if rhea_arch::generic_timer::frequency_hz() != 0 {
            "CNTFRQ_EL0"
        } else {
            "devicetree clock-frequency"
        },
    );
    if let Some(services) = board.services() {
        let _ = write!(w, "{}, then ", services.exit_name);
    }
    let _ = writeln!(
        w,
        "semihosting {}, PSCI {}",
        if rhea_arch::semihosting::is_present() {
            "yes"
        } else {
            "no"
        },
        match p.psci {
            Some(crate::platform::PsciConduit::Hvc) => "hvc",
            Some(crate::platform::PsciConduit::Smc) => "smc",
            None => "none",
        }
    );
    let _ = write!(
        w,
        "rhea: irq: {version}; timer: virtual timer, INTID {timer_intid} -> vector {:#x}; console: ",
        TIMER_VECTOR.get(),
    );
    let _ = match (&p.uart, board.services()) {
        (_, Some(services)) => writeln!(w, "{} (no input)", services.console_name),
        (Some(uart), None) => writeln!(
            w,
            "PL011 at {:#x}, INTID {}",
            uart.regs.base, uart.interrupt.intid
        ),
        (None, None) => writeln!(w, "none"),
    };
    // 4. The board's controller over the GIC, if it has one: it is the runtime's then.
    let controller: &'static dyn InterruptController = match board.interrupt_layer() {
        Some(layer) => (layer.init)(&CONTROLLER).map_err(InitError::Layer)?,
        None => &CONTROLLER,
    };
    Ok(TimeAndIrq {
        clock,
        timer,
        controller,
        timer_vector: TIMER_VECTOR.get(),
        cycles_per_second: hz,
    })
}

/// The index of the GICv3 redistributor whose `GICR_TYPER` names `mpidr` (IHI 0069H
/// §12.11.35: the driver numbers them in region order, which need not be CPU order).
fn redistributor_of(gic: &mut GicV3<'_>, count: usize, mpidr: u64) -> Option<usize> {
    (0..count).find(|&i| gic.gicr_typer(i).is_ok_and(|t| t.core_mpidr() == mpidr))
}

/// On the calling CPU, with its interface up: configures and enables all 16 SGIs (priority
/// [`PRIORITY`]) and, when given, the timer's PPI (level, as the devicetree says), and records
/// the CPU's MPIDR and GICv2 interface bit for the others' SGIs. `timer` is `None` on the boot
/// CPU, whose timer PPI is routed through [`InterruptController::route`].
fn init_private(timer: Option<u32>) {
    let cpu = this_cpu();
    with_gic(|d| match d {
        Driver::V2 { gic, gicd, .. } => {
            let mut g = gic.lock();
            for sgi in 0..16 {
                g.0.set_interrupt_priority(IntId::sgi(sgi), PRIORITY);
                let _ = g.0.enable_interrupt(IntId::sgi(sgi), true);
            }
            if let Some(ppi) = timer.and_then(intid) {
                g.0.set_interrupt_priority(ppi, PRIORITY);
                g.0.set_trigger(ppi, GicTrigger::Level);
                let _ = g.0.enable_interrupt(ppi, true);
            }
            // The banked ITARGETSR0 byte of an SGI reads as this CPU's interface bit (0 on a
            // GIC with one CPU interface).
            let me = read32(gicd + GICD_ITARGETSR) & 0xff;
            V2_TARGET[cpu].store(me as u8, Ordering::Relaxed);
        }
        Driver::V3 { gic, .. } => {
            let mut g = gic.lock();
            let r = Some(REDISTRIBUTOR[cpu].load(Ordering::Relaxed));
            for sgi in 0..16 {
                let _ = g.0.set_interrupt_priority(IntId::sgi(sgi), r, PRIORITY);
                let _ = g.0.enable_interrupt(IntId::sgi(sgi), r, true);
            }
            if let Some(ppi) = timer.and_then(intid) {
                let _ = g.0.set_interrupt_priority(ppi, r, PRIORITY);
                let _ = g.0.set_trigger(ppi, r, GicTrigger::Level);
                let _ = g.0.enable_interrupt(ppi, r, true);
            }
        }
    });
    CPU_MPIDR[cpu].store(this_mpidr(), Ordering::Relaxed);
}

/// Why a secondary CPU's interrupt controller could not be brought up.
#[derive(Debug)]
pub(crate) enum SecondaryError {
    /// Interrupts were never initialised on the boot CPU.
    NoGic,
    /// No GICv3 redistributor names this CPU's MPIDR (or it lies outside the mapped ones).
    NoRedistributor(u64),
}

impl core::fmt::Display for SecondaryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoGic => f.write_str("the GIC is not initialised"),
            Self::NoRedistributor(m) => {
                write!(f, "no GICv3 redistributor for MPIDR {m:#x}")
            }
        }
    }
}

/// Brings up the calling secondary CPU's side of the GIC — its CPU interface (GICv2) or
/// redistributor and system-register interface (GICv3), its SGIs and the timer's PPI — and
/// disarms its timer. IRQs stay masked.
pub(crate) fn init_secondary_cpu(cpu: usize) -> Result<(), SecondaryError> {
    rhea_arch::generic_timer::disarm();
    let mpidr = this_mpidr();
    let done = with_gic(|d| match d {
        Driver::V2 { gic, .. } => {
            let mut g = gic.lock();
            // The banked half of the distributor and this CPU's interface, as on the boot CPU.
            g.0.setup();
            if g.0.typer().has_security_extension() {
                g.0.enable_group0(true);
            }
            Ok(())
        }
        Driver::V3 {
            gic,
            redistributors,
        } => {
            let mut g = gic.lock();
            let r = redistributor_of(&mut g.0, *redistributors, mpidr)
                .ok_or(SecondaryError::NoRedistributor(mpidr))?;
            REDISTRIBUTOR[cpu.min(MAX_CPUS - 1)].store(r, Ordering::Relaxed);
            g.0.init_cpu(r);
            GicCpuInterface::set_priority_mask(0xff);
            GicCpuInterface::enable_group1(true);
            Ok(())
        }
    })
    .ok_or(SecondaryError::NoGic)?;
    done?;
    init_private(Some(TIMER_INTID.load(Ordering::Relaxed)));
    Ok(())
}

/// The console UART's interrupt line (its GIC INTID, as the board numbers GIC lines).
pub fn console_rx_line() -> IrqLine {
    match (
        FACTS.get().and_then(|f| f.platform.uart),
        crate::machine::board(),
    ) {
        (Some(uart), Some(board)) => board.gic_line(uart.interrupt.intid),
        _ => IrqLine::NONE,
    }
}

/// Routes PPI `intid` (16–31) to `vector` on the calling CPU as a level interrupt and enables
/// it there: for a per-CPU interrupt a board's interrupt layer adds, on every CPU (a PPI's
/// configuration is banked per CPU — GICv2's distributor registers, GICv3's redistributor).
/// Takes the `GIC` lock; call with the CPU's interface up.
pub fn route_ppi_here(intid: u32, vector: u8) -> Result<(), RouteError> {
    if !(16..32).contains(&intid) {
        return Err(RouteError::NoSuchLine(intid));
    }
    FIRMWARE_TRIGGER[intid as usize].store(2, Ordering::Relaxed);
    CONTROLLER.route(IrqLine(intid), vector, Trigger::LevelLow)?;
    CONTROLLER.unmask(IrqLine(intid))
}
