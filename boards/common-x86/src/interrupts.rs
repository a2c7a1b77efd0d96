//! Interrupts and time on this board: the legacy PIC put out of the way, the local APIC
//! (x2APIC when the CPU has it, else xAPIC through MMIO), the I/O APIC at its PC address, the
//! TSC calibrated (a CPUID-stated frequency when present, else measured against the HPET, the
//! ACPI PM timer or the PIT, the first that works; `rhea.tsc_ref` forces one and
//! `rhea.tsc_check` cross-checks), and the LAPIC timer as the one-shot timer (TSC-deadline mode
//! when present, else one-shot mode with a divider calibrated against the TSC).
//!
//! The HPET and the PM timer are found in the ACPI tables during early boot
//! ([`discover_time_references`], while the boot identity map shows them); the HPET's
//! registers are mapped here, when the calibration may need them.
//!
//! The drivers are `rhea-irq` and `rhea-timers`; this module only binds them to the
//! machine's ports, MSRs and MMIO pages (`rhea-arch` primitives) and keeps the instances.
//!
//! Lock: each I/O APIC sits behind its own spin lock in `IOAPICS`, taken with interrupts disabled (its
//! select/data register pair must not interleave); it is a leaf lock.
#![allow(
    unsafe_code,
    reason = "port I/O, MSRs and MMIO; each use has a SAFETY note"
)]

use crate::calibrate::{
    Calibration, CalibrationConfig, CalibrationError, CrossCheck, FrequencySource, Missing,
    ReferenceCounter, References, TscError, TscRef,
};
use crate::hpet::{Hpet, HpetError, HpetTable, HpetTableError};
use crate::lapic::LapicConfig;
use crate::madt::{Rsdp, Window};
use crate::pm_timer::{PmTimer, PmTimerError, PmTimerPort};
use crate::{
    ApicId, ApicMsr, IoApic, IsaIrqMap, IsaOverride, Lapic, LapicAccess, LapicTimer,
    LapicTimerMode, Mmio32, Msr, PortIo, TimerDivide, X2Apic, XApic,
};
use rhea_arch::sync::{IrqGuard, IrqsOff, SpinLock};
use rhea_hal::{InterruptController, IrqLine, RouteError, TimeAndIrq, Trigger};
use rhea_irq::vectors::{self, Vector};
use rhea_sync::Once;
use rhea_timers::{ClockConversion, CycleCounter, TscClock};

/// The I/O APIC's physical address on PCs (and both QEMU machines), used when there is no
/// usable MADT; the MADT's first I/O APIC otherwise.
const IOAPIC_BASE: u64 = 0xfec0_0000;

/// Port I/O through `in`/`out`.
#[derive(Debug)]
struct Ports;

impl PortIo for Ports {
    fn inb(&self, port: u16) -> u8 {
        // SAFETY: the timer and PIC drivers only touch the PIT (0x40–0x43), port 0x61 and the
        // 8259s (0x20/0x21/0xa0/0xa1) plus the 0x80 delay port, all owned by this board.
        unsafe { rhea_arch::inb(port) }
    }
    fn outb(&self, port: u16, value: u8) {
        // SAFETY: as in `inb`.
        unsafe { rhea_arch::outb(port, value) }
    }
    fn inl(&self, port: u16) -> u32 {
        // SAFETY: used only for the ACPI PM timer, at the port the validated FADT names: a
        // read-only counter whose reads have no side effect.
        unsafe { x86_64::instructions::port::PortReadOnly::<u32>::new(port).read() }
    }
}

/// MSRs, limited by `ApicMsr` to the APIC base, TSC deadline and x2APIC registers.
#[derive(Debug)]
struct Msrs;

impl Msr for Msrs {
    fn read_msr(&self, msr: ApicMsr) -> u64 {
        // SAFETY: `ApicMsr` only names IA32_APIC_BASE, IA32_TSC_DEADLINE and the x2APIC range;
        // the driver reads x2APIC registers only in x2APIC mode and TSC_DEADLINE only when the
        // CPU has it.
        unsafe { rhea_arch::rdmsr(msr.number()) }
    }
    fn write_msr(&self, msr: ApicMsr, value: u64) {
        // SAFETY: as in `read_msr`; the values are the driver's register encodings.
        unsafe { rhea_arch::wrmsr(msr.number(), value) }
    }
    fn wrmsr_fence(&self) {
        rhea_arch::memory_fence();
    }
}

/// A page of device registers, identity-mapped uncached.
#[derive(Debug)]
struct Mmio {
    base: u64,
}

impl Mmio32 for Mmio {
    fn read32(&self, offset: usize) -> u32 {
        // SAFETY: `base` is a device's register block (a LAPIC, I/O APIC or HPET page, or the
        // HPET's 1 KiB inside one) mapped uncached by `init` before this object exists; the
        // drivers only use register offsets inside it, 32-bit aligned.
        unsafe { core::ptr::read_volatile((self.base + offset as u64) as *const u32) }
    }
    fn write32(&self, offset: usize, value: u32) {
        // SAFETY: as in `read32`.
        unsafe { core::ptr::write_volatile((self.base + offset as u64) as *mut u32, value) }
    }
}

/// The TSC.
#[derive(Debug)]
struct Tsc;

impl CycleCounter for Tsc {
    fn read(&self) -> u64 {
        rhea_arch::read_cycle_counter()
    }
}

static X2APIC: X2Apic<Msrs> = X2Apic::new(Msrs);
static XAPIC: Once<XApic<Mmio>> = Once::new();
static LAPIC: Once<Lapic<&'static dyn LapicAccess>> = Once::new();
static CLOCK: Once<TscClock<Tsc>> = Once::new();
static TIMER: Once<LapicTimer<&'static dyn LapicAccess, Msrs, Tsc>> = Once::new();
/// KVM's paravirtual features as the boot CPU found them (each AP registers the same).
static KVM: Once<crate::kvm::KvmFeatures> = Once::new();
/// The I/O APICs, each serving GSIs `gsi_base..gsi_base + entries` (microvm has two: GSIs
/// 0–23 and 24–47, the second carrying its virtio-mmio lines).
const MAX_IOAPICS: usize = crate::madt::MAX_IOAPICS;
/// An I/O APIC with the GSIs it serves, fixed at creation (read without taking its lock).
///
/// Lock: each I/O APIC's, interrupts off (`route`/`mask` run from handlers too); a leaf.
type IoApicSlot = (core::ops::Range<u32>, SpinLock<IoApic<Mmio>, IrqsOff>);
static IOAPICS: Once<[Option<IoApicSlot>; MAX_IOAPICS]> = Once::new();
static ISA: Once<IsaIrqMap> = Once::new();
static CONTROLLER: Pc = Pc;

/// The LAPIC + I/O APIC pair as one controller.
#[derive(Debug)]
struct Pc;

impl Pc {
    /// Runs `f` on the I/O APIC serving `line`, with interrupts disabled (its lock is taken in
    /// that state, so an interrupt handler masking a line cannot find it held).
    fn with_ioapic<R>(line: IrqLine, f: impl FnOnce(&mut IoApic<Mmio>) -> R) -> Option<R> {
        let (_, io) = IOAPICS
            .get()?
            .iter()
            .flatten()
            .find(|(gsis, _)| gsis.contains(&line.0))?;
        Some(f(&mut io.lock()))
    }
}

impl InterruptController for Pc {
    fn end_of_interrupt(&self, vector: u8) {
        if let Some(l) = LAPIC.get().filter(|_| vectors::lapic_needs_eoi(vector)) {
            l.eoi();
        }
    }

    fn route(&self, line: IrqLine, vector: u8, trigger: Trigger) -> Result<(), RouteError> {
        let v = Vector::new(vector).ok_or(RouteError::BadVector(vector))?;
        let dest = LAPIC.get().map_or(ApicId(0), |l| l.read_id());
        Self::with_ioapic(line, |io| io.route(line, v, dest, trigger))
            .ok_or(RouteError::NoSuchLine(line.0))?
            .map_err(|_| RouteError::NoSuchLine(line.0))
    }

    fn unmask(&self, line: IrqLine) -> Result<(), RouteError> {
        Self::with_ioapic(line, |io| io.unmask(line))
            .ok_or(RouteError::NoSuchLine(line.0))?
            .map_err(|_| RouteError::NoSuchLine(line.0))
    }

    fn mask(&self, line: IrqLine) -> Result<(), RouteError> {
        Self::with_ioapic(line, |io| io.mask(line))
            .ok_or(RouteError::NoSuchLine(line.0))?
            .map_err(|_| RouteError::NoSuchLine(line.0))
    }

    fn raise_self(&self, vector: u8) {
        if let (Some(l), Some(v)) = (LAPIC.get(), Vector::new(vector)) {
            // Interrupts off: an xAPIC ICR write is two register writes that an interrupt
            // handler's own IPI must not split.
            let _irqs = IrqGuard::new();
            let _ = l.send_ipi(l.read_id(), v);
        }
    }

    fn send_ipi(&self, cpu: rhea_hal::CpuId, vector: u8) {
        let dest = crate::smp::apic_id(cpu.0 as usize);
        if let (Some(l), Some(v), Some(dest)) = (LAPIC.get(), Vector::new(vector), dest) {
            // As in `raise_self`.
            let _irqs = IrqGuard::new();
            let _ = l.send_ipi(ApicId(dest), v);
        }
    }
}

/// Busy-waits `ns` nanoseconds on the calibrated TSC clock.
fn spin_ns(ns: u64) {
    if let Some(c) = CLOCK.get() {
        let start = rhea_hal::Clock::now(c).as_nanos();
        while rhea_hal::Clock::now(c).as_nanos().wrapping_sub(start) < ns {
            core::hint::spin_loop();
        }
    }
}

/// Starts the AP with APIC ID `apic` at real-mode page `page` (INIT, 10 ms, SIPI, 200 µs, a
/// second SIPI unless it already arrived; SDM Vol. 3A §9.4.4.1) and waits up to `timeout_ns`
/// for it to set `started`. On a timeout the AP is sent INIT again, so it waits for a SIPI
/// instead of running later with another AP's parameters. `sipi` false leaves the SIPIs out
/// (fault injection for tests).
pub(crate) fn start_ap(
    apic: u32,
    page: u8,
    sipi: bool,
    started: &core::sync::atomic::AtomicBool,
    timeout_ns: u64,
) -> Result<(), &'static str> {
    use core::sync::atomic::Ordering;
    let l = LAPIC.get().ok_or("the local APIC is not initialised")?;
    let dest = ApicId(apic);
    l.send_init(dest).map_err(|_| "INIT was not delivered")?;
    spin_ns(10_000_000);
    for _ in 0..if sipi { 2 } else { 0 } {
        l.send_startup(dest, page)
            .map_err(|_| "the start-up IPI was not delivered")?;
        spin_ns(200_000);
        if started.load(Ordering::Acquire) {
            return Ok(());
        }
    }
    let c = CLOCK.get().ok_or("no clock")?;
    let start = rhea_hal::Clock::now(c).as_nanos();
    while !started.load(Ordering::Acquire) {
        if rhea_hal::Clock::now(c).as_nanos().wrapping_sub(start) > timeout_ns {
            let _ = l.send_init(dest);
            return Err("no sign of life within 1 s of INIT-SIPI-SIPI");
        }
        core::hint::spin_loop();
    }
    Ok(())
}

/// Brings up the calling application processor's local APIC (the boot CPU's mode) and its
/// timer. Interrupts stay disabled.
pub(crate) fn init_this_ap() {
    let Some(lapic) = LAPIC.get() else { return };
    match lapic.mode() {
        crate::lapic::LapicMode::X2Apic => {
            crate::lapic::enable_x2apic(&Msrs);
        }
        crate::lapic::LapicMode::XApic => {
            // Same base as the boot CPU's (mapped already); only the enable bit matters here.
            let _ = crate::lapic::enable_xapic(&Msrs);
        }
    }
    lapic.init(&LapicConfig::DEFAULT);
    if let Some(&kvm) = KVM.get() {
        crate::kvm::register_this_cpu(rhea_arch::cpu_id().0 as usize, kvm);
    }
    if let Some(t) = TIMER.get() {
        t.init_this_cpu();
    }
}

/// Why interrupt and time bring-up failed.
#[derive(Debug)]
pub enum InitError {
    /// The TSC frequency could be neither read nor measured.
    Calibration(TscError),
    /// The LAPIC timer's rate could not be measured.
    LapicTimer(CalibrationError),
    /// The LAPIC could not be enabled.
    Lapic(crate::lapic::LapicError),
    /// The I/O APIC at this address did not answer sensibly.
    IoApic(u64, crate::ioapic::IoApicError),
    /// A device page could not be mapped.
    Map,
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Calibration(e) => write!(f, "TSC calibration failed: {e}"),
            Self::LapicTimer(e) => write!(f, "LAPIC timer calibration failed: {e}"),
            Self::Lapic(e) => write!(f, "local APIC: {e}"),
            Self::IoApic(base, e) => write!(f, "I/O APIC at {base:#x}: {e}"),
            Self::Map => f.write_str("cannot map interrupt controller registers"),
        }
    }
}

/// Calibration windows: 3 × 5 ms against the HPET, the PM timer or the PIT gives a frequency
/// within tens to a few hundred ppm, good enough for sub-millisecond timers, for 15 ms of boot
/// time (TCG has no CPUID frequency leaf, so this is what runs there). A CPUID-stated frequency
/// is used as is unless the command line asks for the cross-check (`rhea.tsc_check=1`): boot
/// time matters on KVM.
const fn calibration_config(cross_check: bool) -> CalibrationConfig {
    CalibrationConfig {
        window_us: 5_000,
        samples: 3,
        cross_check,
    }
}

/// What the ACPI tables say about the time references, read by [`discover_time_references`].
#[derive(Clone, Copy, Debug)]
struct TimeTables {
    hpet: Result<HpetTable, HpetTableError>,
    pm_timer: Result<PmTimerPort, PmTimerError>,
}

static TIME_TABLES: Once<TimeTables> = Once::new();

/// Reads the HPET table and the FADT's PM timer (early boot, while the boot identity map shows
/// the firmware's tables; `rsdp` as the boot protocol gave it, else the BIOS areas are
/// searched). Prints nothing: [`init`] reports what it found next to the calibration.
pub fn discover_time_references(rsdp: Option<u64>) {
    let window = Window {
        start: 0x400,
        end: 4 << 30,
    };
    let where_ = match rsdp {
        Some(a) => Rsdp::At(a as usize),
        None => Rsdp::SearchBios,
    };
    // SAFETY: as for the MADT (`smp::discover`): the boot page tables identity-map the low
    // 4 GiB, which holds the BIOS areas and the firmware's ACPI tables; nothing writes them.
    let tables = unsafe {
        TimeTables {
            hpet: crate::hpet::read(where_, window),
            pm_timer: crate::pm_timer::read(where_, window),
        }
    };
    TIME_TABLES.call_once(|| tables);
}

/// The HPET as [`init`] found it.
enum HpetFound {
    /// No usable table.
    Table(HpetTableError),
    /// A table, but registers that cannot be mapped.
    Unmapped(HpetTable),
    /// A table, but registers that cannot be used.
    Device(HpetTable, HpetError),
    /// Ready to measure against.
    Usable(HpetTable, Hpet<Mmio>),
}

/// Maps the HPET the table describes and checks its capabilities. A page that cannot be
/// mapped makes the HPET unusable, not the boot fail: there are other references.
fn find_hpet(
    table: Result<HpetTable, HpetTableError>,
    map_mmio: &dyn Fn(u64, u64) -> bool,
) -> HpetFound {
    let table = match table {
        Ok(t) => t,
        Err(e) => return HpetFound::Table(e),
    };
    // `parse_table` checked the 1 KiB block lies inside one page.
    if !map_mmio(table.base & !0xfff, 4096) {
        return HpetFound::Unmapped(table);
    }
    match Hpet::new(Mmio { base: table.base }) {
        Ok(h) => HpetFound::Usable(table, h),
        Err(e) => HpetFound::Device(table, e),
    }
}

/// Brings up interrupts and time on the boot CPU (interrupts stay disabled) and prints what it
/// chose. `forced` is `rhea.tsc_ref`'s source; `map_mmio` identity-maps a device range uncached.
pub fn init(
    boot_cycles: u64,
    cross_check: bool,
    forced: Option<TscRef>,
    map_mmio: &dyn Fn(u64, u64) -> bool,
) -> Result<TimeAndIrq, InitError> {
    let features = rhea_arch::features::report();
    let (has_x2apic, has_tsc_deadline) = (features.x2apic, features.tsc_deadline);
    // KVM's paravirtual time first: kvmclock's scaling is the TSC frequency KVM itself uses
    // (no calibration loop), then a frequency CPUID states, then the PIT.
    let kvm = crate::kvm::KvmFeatures(features.kvm_features);
    KVM.call_once(|| kvm);
    let pv = crate::kvm::register_this_cpu(0, kvm);
    let stated_tsc_hz = pv
        .clock
        .map(|snap| (snap.tsc_hz(), "kvmclock"))
        .or(features.tsc_hz);
    // 1. The 8259s: remapped away from the exception vectors and fully masked.
    let _pic = crate::pic8259::remap_and_mask(&Ports);

    // 2. The local APIC.
    let access: &'static dyn LapicAccess = if has_x2apic {
        crate::lapic::enable_x2apic(&Msrs);
        &X2APIC
    } else {
        let base = crate::lapic::enable_xapic(&Msrs).map_err(InitError::Lapic)?;
        if !map_mmio(base.base.0, 4096) {
            return Err(InitError::Map);
        }
        XAPIC.call_once(|| XApic::new(Mmio { base: base.base.0 }))
    };
    let lapic = LAPIC.call_once(|| Lapic::new(access));
    lapic.init(&LapicConfig::DEFAULT);

    // 3. The I/O APICs, all inputs masked until a driver routes one: the MADT's, else the
    //    PC's usual one.
    let madt = crate::smp::madt();
    let mut found = [(IOAPIC_BASE, 0u32); MAX_IOAPICS];
    let count = match madt.map(|m| m.io_apics()) {
        Some(list) if !list.is_empty() => {
            for (slot, io) in found.iter_mut().zip(list) {
                *slot = (io.address, io.gsi_base);
            }
            list.len()
        }
        _ => 1,
    };
    let mut ioapics = [const { None }; MAX_IOAPICS];
    for (slot, &(base, gsi_base)) in ioapics.iter_mut().zip(&found[..count]) {
        if !map_mmio(base, 4096) {
            return Err(InitError::Map);
        }
        let mut io =
            IoApic::new(Mmio { base }, gsi_base).map_err(|e| InitError::IoApic(base, e))?;
        io.mask_all();
        *slot = Some((
            io.gsi_base()..io.gsi_base() + io.entries(),
            SpinLock::new(io),
        ));
    }
    IOAPICS.call_once(|| ioapics);
    // ISA IRQ wiring: the MADT's overrides; without a MADT, what QEMU and most PC firmware
    // do (ISA IRQ 0 on GSI 2).
    ISA.call_once(|| {
        madt.and_then(|m| IsaIrqMap::new(m.overrides()).ok())
            .unwrap_or_else(|| {
                IsaIrqMap::new(&[IsaOverride::IRQ0_TO_GSI2]).expect("a single override is valid")
            })
    });

    // 4. The clock: TSC counted from the board's first instruction, its frequency stated or
    //    measured against the first reference that works (or the one `rhea.tsc_ref` names).
    let tables = TIME_TABLES.get().copied().unwrap_or(TimeTables {
        hpet: Err(HpetTableError::NoAcpi),
        pm_timer: Err(PmTimerError::NoAcpi),
    });
    let hpet = find_hpet(tables.hpet, map_mmio);
    let pm_timer = tables.pm_timer.map(|at| PmTimer::new(Ports, at));
    report_references(stated_tsc_hz, &hpet, &pm_timer);
    let refs = References {
        stated: stated_tsc_hz,
        hpet: match &hpet {
            HpetFound::Usable(_, h) => Ok(h),
            HpetFound::Table(e) if e.is_missing() => Err(Missing::Absent),
            HpetFound::Table(_) | HpetFound::Unmapped(_) | HpetFound::Device(..) => {
                Err(Missing::Refused)
            }
        },
        pm_timer: match &pm_timer {
            Ok(pm) => Ok(pm),
            Err(e) if e.is_missing() => Err(Missing::Absent),
            Err(_) => Err(Missing::Refused),
        },
        pit: Some(&Ports),
    };
    let calibration =
        crate::calibrate::calibrate_tsc(&refs, forced, &Tsc, &calibration_config(cross_check))
            .map_err(InitError::Calibration)?;
    let conversion = ClockConversion::from_hz(calibration.hz)
        .expect("a calibrated frequency is at least MIN_PLAUSIBLE_HZ, never 0");
    let clock = CLOCK.call_once(|| TscClock::with_origin(Tsc, conversion, boot_cycles));

    // 5. The one-shot timer.
    let timer_vector = vectors::LAPIC_TIMER;
    let mode = if has_tsc_deadline {
        LapicTimerMode::TscDeadline
    } else {
        let rate = crate::lapic_timer::calibrate_lapic_timer(
            lapic,
            timer_vector,
            TimerDivide::By16,
            &Tsc,
            calibration.hz,
            &calibration_config(cross_check),
        )
        .map_err(InitError::LapicTimer)?;
        LapicTimerMode::OneShot(rate)
    };
    let timer = TIMER.call_once(|| {
        LapicTimer::new(
            Lapic::new(access),
            Msrs,
            Tsc,
            clock.timebase(),
            timer_vector,
            mode,
        )
    });
    timer.init_this_cpu();

    report(
        &calibration,
        if has_x2apic { "x2APIC" } else { "xAPIC" },
        mode,
        timer_vector,
    );
    if features.hypervisor == Some("KVM") {
        report_kvm(kvm, pv);
    }
    Ok(TimeAndIrq {
        clock,
        timer,
        controller: &CONTROLLER,
        timer_vector: timer_vector.get(),
        cycles_per_second: calibration.hz,
    })
}

/// What KVM's paravirtual time gave the boot CPU.
fn report_kvm(kvm: crate::kvm::KvmFeatures, pv: crate::kvm::Registered) {
    use core::fmt::Write;
    let mut w = crate::machine::ConsoleWriter;
    let yn = |b: bool| if b { "yes" } else { "no" };
    let _ = match pv.clock {
        Some(snap) => writeln!(
            w,
            "rhea: time: kvmclock: {} kHz, tsc stable {}; steal time {}",
            snap.tsc_hz() / 1000,
            yn(snap.tsc_stable()),
            if pv.steal { "counted" } else { "not offered" }
        ),
        None => writeln!(
            w,
            "rhea: time: kvmclock {}; steal time {}",
            if kvm.clock() {
                "offered but empty"
            } else {
                "not offered"
            },
            if pv.steal { "counted" } else { "not offered" }
        ),
    };
}

/// What the TSC may be measured against: the stated frequency, the HPET, the PM timer (the PIT
/// is found out by measuring).
fn report_references(
    stated: Option<(u64, &'static str)>,
    hpet: &HpetFound,
    pm_timer: &Result<PmTimer<Ports>, PmTimerError>,
) {
    use core::fmt::Write;
    let mut w = crate::machine::ConsoleWriter;
    let _ = write!(w, "rhea: time: references: ");
    let _ = match stated {
        Some((hz, leaf)) => write!(w, "{leaf} states {} kHz; ", hz / 1000),
        None => write!(w, "no frequency stated by CPUID; "),
    };
    let _ = match hpet {
        HpetFound::Usable(t, h) => write!(
            w,
            "HPET at {:#x} ({} kHz, {}-bit, {}); ",
            t.base,
            ReferenceCounter::rate(h).hz() / 1000,
            if h.is_64bit() { 64 } else { 32 },
            if h.read_is_enabled() {
                "running"
            } else {
                "halted"
            }
        ),
        HpetFound::Table(e) if e.is_missing() => write!(w, "no HPET ({e}); "),
        HpetFound::Table(e) => write!(w, "HPET table refused ({e}); "),
        HpetFound::Unmapped(t) => write!(w, "HPET at {:#x} refused (cannot map it); ", t.base),
        HpetFound::Device(t, e) => write!(w, "HPET at {:#x} refused ({e}); ", t.base),
    };
    let _ = match pm_timer {
        Ok(pm) => writeln!(
            w,
            "ACPI PM timer at port {:#x} ({}-bit); PIT ports",
            pm.port().port,
            pm.port().bits
        ),
        Err(e) if e.is_missing() => writeln!(w, "no ACPI PM timer ({e}); PIT ports"),
        Err(e) => writeln!(w, "ACPI PM timer refused ({e}); PIT ports"),
    };
}

fn report(cal: &Calibration, lapic: &str, mode: LapicTimerMode, vector: Vector) {
    use core::fmt::Write;
    let mut w = crate::machine::ConsoleWriter;
    if let Some(hz) = cal.ignored_stated_hz {
        let _ = writeln!(
            w,
            "rhea: time: CPUID states an implausible {hz} Hz; ignored"
        );
    }
    for (r, e) in cal.skipped.iter().flatten() {
        let _ = writeln!(
            w,
            "rhea: time: the {} failed ({e}); trying the next reference",
            r.describe()
        );
    }
    let forced = if cal.forced {
        ", forced by rhea.tsc_ref"
    } else {
        ""
    };
    let _ = write!(
        w,
        "rhea: time: tsc {} kHz ({}{forced})",
        cal.hz / 1000,
        cal.source
    );
    let _ = match cal.cross_check {
        CrossCheck::Compared {
            hz,
            against: FrequencySource::Cpuid(leaf),
            disagreement_ppm,
        } => writeln!(
            w,
            "; {leaf} states {} kHz, {disagreement_ppm:+} ppm",
            hz / 1000
        ),
        CrossCheck::Compared {
            hz,
            against: FrequencySource::Measured(r),
            disagreement_ppm,
        } => writeln!(
            w,
            "; measured {} kHz against the {r}, {disagreement_ppm:+} ppm",
            hz / 1000
        ),
        CrossCheck::Failed(r, e) => {
            writeln!(w, "; cross-check against the {} failed: {e}", r.describe())
        }
        CrossCheck::NoOther => writeln!(w, "; no other source to cross-check against"),
        CrossCheck::NotRun => writeln!(w),
    };
    let _ = match mode {
        LapicTimerMode::TscDeadline => writeln!(
            w,
            "rhea: irq: {lapic} with I/O APIC; timer: TSC-deadline, vector {:#x}",
            vector.get()
        ),
        LapicTimerMode::OneShot(rate) => writeln!(
            w,
            "rhea: irq: {lapic} with I/O APIC; timer: one-shot, {} kHz after the divider, vector {:#x}",
            rate.hz() / 1000,
            vector.get()
        ),
    };
}

/// The GSI an ISA IRQ arrives on.
pub fn isa_line(irq: u8) -> IrqLine {
    ISA.get()
        .and_then(|m| m.route(irq))
        .map_or(IrqLine(u32::from(irq)), |r| r.gsi)
}

/// An MSI raising `vector` on the boot CPU: address `0xFEE0_0000` with the destination APIC ID
/// in bits 19:12 (physical mode, no redirection hint), data the vector (fixed delivery, edge;
/// SDM Vol. 3A §11.11). `None` if the boot CPU's APIC ID does not fit 8 bits (that needs
/// interrupt remapping).
pub fn msi_message(vector: u8) -> Option<(u64, u32)> {
    let dest = crate::smp::apic_id(0).unwrap_or(0);
    let dest = u8::try_from(dest).ok()?;
    Some((0xfee0_0000 | (u64::from(dest) << 12), u32::from(vector)))
}
