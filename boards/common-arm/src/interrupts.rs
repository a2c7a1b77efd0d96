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
//! `raise_self(vector)` sends a software-generated interrupt (SGI) to this CPU; each vector
//! raised this way gets one of the 16 SGIs on first use.
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
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use rhea_hal::{InterruptController, IrqLine, OneShotTimer, RouteError, TimeAndIrq, Trigger};
use rhea_irq::vectors::{self, Vector};
use rhea_timers::{ClockConversion, CycleCounter, Timebase, TscClock};
use spin::{Mutex, Once};

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
/// How much of the GICv3 redistributor region to map: one CPU's RD and SGI frames (2 × 64
/// KiB), twice for GICv4's VLPI frames.
const GICR_MAP_BYTES: u64 = 4 * 64 * 1024;
/// The GICv2 CPU interface's acknowledge and end-of-interrupt registers (IHI 0048B §4.4).
const GICC_IAR: u64 = 0x0c;
const GICC_EOIR: u64 = 0x10;
/// The GICv2 distributor's target registers, one byte per INTID (IHI 0048B §4.3.12).
const GICD_ITARGETSR: u64 = 0x800;

/// A GIC driver owned by one lock. The drivers hold raw pointers to their register frames,
/// which makes them neither `Send` nor `Sync`.
struct Owned<T>(T);

// SAFETY: the frames are device memory mapped for the whole run; the driver is only used from
// behind `GIC`'s lock (IRQs masked), so no two CPUs or contexts use it at once.
unsafe impl<T> Send for Owned<T> {}

enum Driver {
    V2 {
        gic: Mutex<Owned<GicV2<'static>>>,
        /// The CPU interface (GICC) and distributor (GICD) bases, for the lock-free hot path and
        /// the target registers the driver does not cover.
        gicc: u64,
        gicd: u64,
    },
    V3 {
        gic: Mutex<Owned<GicV3<'static>>>,
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
/// The raw acknowledge value being handled on the boot CPU (per CPU with SMP).
static ACTIVE: AtomicU32 = AtomicU32::new(NO_INTID);
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
    let was = rhea_arch::irq_save();
    let r = GIC.get().map(f);
    rhea_arch::irq_restore(was);
    r
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
    ACTIVE.store(raw, Ordering::Relaxed);
    match VECTOR_OF[id as usize].load(Ordering::Relaxed) {
        0 => {
            UNROUTED.fetch_add(1, Ordering::Relaxed);
            end(raw);
            ACTIVE.store(NO_INTID, Ordering::Relaxed);
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
            Driver::V3 { gic } => {
                let mut g = gic.lock();
                let cpu = (id < 32).then_some(0);
                let ok = g.0.set_interrupt_priority(int, cpu, PRIORITY).is_ok()
                    && (id < 16 || g.0.set_trigger(int, cpu, trigger).is_ok())
                    && (id < 32
                        || g.0
                            .distributor()
                            .set_routing(
                                int,
                                Some(rhea_arch::generic_timer::mpidr() & 0xff_00ff_ffff),
                            )
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
            Driver::V3 { gic } => gic
                .lock()
                .0
                .enable_interrupt(int, (id < 32).then_some(0), enable)
                .is_ok(),
        })
        .filter(|ok| *ok)
        .map(|_| ())
        .ok_or(RouteError::NoSuchLine(id))
    }

    fn sgi_for(&self, vector: u8) -> Option<u32> {
        if let Some(sgi) = SGI_VECTOR
            .iter()
            .position(|v| v.load(Ordering::Relaxed) == vector)
        {
            return Some(sgi as u32);
        }
        // RT: at most 16 attempts, on the first raise of each vector only.
        for (sgi, slot) in SGI_VECTOR.iter().enumerate() {
            if slot
                .compare_exchange(0, vector, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                VECTOR_OF[sgi].store(vector, Ordering::Relaxed);
                let _ = self.configure(sgi as u32, GicTrigger::Edge);
                let _ = self.enable(sgi as u32, true);
                return Some(sgi as u32);
            }
        }
        None
    }
}

impl InterruptController for GicController {
    fn end_of_interrupt(&self, _vector: u8) {
        let raw = ACTIVE.swap(NO_INTID, Ordering::Relaxed);
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
        let int = IntId::sgi(sgi);
        with_gic(|d| match d {
            Driver::V2 { gic, .. } => gic.lock().0.send_sgi(
                int,
                arm_gic::gicv2::SgiTarget::List {
                    target_list_filter: arm_gic::gicv2::SgiTargetListFilter::ForwardSelfOnly,
                    target_list: 0,
                },
            ),
            Driver::V3 { .. } => {
                let mpidr = rhea_arch::generic_timer::mpidr();
                let _ = GicCpuInterface::send_sgi(
                    int,
                    SgiTarget::List {
                        affinity3: ((mpidr >> 32) & 0xff) as u8,
                        affinity2: ((mpidr >> 16) & 0xff) as u8,
                        affinity1: ((mpidr >> 8) & 0xff) as u8,
                        target_list: 1 << (mpidr & 0xf),
                    },
                    SgiTargetGroup::CurrentGroup1,
                );
            }
        });
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
                gic: Mutex::new(Owned(gic)),
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
            let gicr = map(
                map_mmio,
                MmioRange {
                    base: redistributors.base,
                    len: redistributors.len.min(GICR_MAP_BYTES),
                },
            )?;
            let (Some(gicd), Some(gicr)) = (
                NonNull::new(gicd as *mut Gicd),
                NonNull::new(gicr as *mut GicrSgi),
            ) else {
                return Err(InitError::Gic("a register frame at address 0"));
            };
            // SAFETY: the distributor and this CPU's redistributor frames were just mapped as
            // device memory; this is the only driver instance.
            let mut gic = unsafe { GicV3::new(UniqueMmioPointer::new(gicd), gicr, 1) }
                .map_err(|_| InitError::Gic("no redistributor for CPU 0"))?;
            gic.setup(0);
            GicCpuInterface::set_priority_mask(0xff);
            gic.enable_all_interrupts(false);
            GIC.call_once(|| Driver::V3 {
                gic: Mutex::new(Owned(gic)),
            });
            "GICv3"
        }
    };
    FIRMWARE_TRIGGER[p.uart.interrupt.intid as usize % MAX_INTID].store(
        match p.uart.interrupt.trigger {
            DtTrigger::Edge => 1,
            DtTrigger::Level => 2,
        },
        Ordering::Relaxed,
    );

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
    let _ = writeln!(
        w,
        "rhea: time: counter {} kHz ({}); exit: semihosting {}, PSCI {}",
        hz / 1000,
        if rhea_arch::generic_timer::frequency_hz() != 0 {
            "CNTFRQ_EL0"
        } else {
            "devicetree clock-frequency"
        },
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
    let _ = writeln!(
        w,
        "rhea: irq: {version}; timer: virtual timer, INTID {timer_intid} -> vector {:#x}; console: PL011 at {:#x}, INTID {}",
        TIMER_VECTOR.get(),
        p.uart.regs.base,
        p.uart.interrupt.intid
    );
    Ok(TimeAndIrq {
        clock,
        timer,
        controller: &CONTROLLER,
        timer_vector: TIMER_VECTOR.get(),
        cycles_per_second: hz,
    })
}

/// The console UART's interrupt line (its GIC INTID).
pub fn console_rx_line() -> IrqLine {
    IrqLine(
        FACTS
            .get()
            .map_or(u32::MAX, |f| f.platform.uart.interrupt.intid),
    )
}
