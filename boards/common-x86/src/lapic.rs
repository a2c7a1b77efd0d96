//! The local APIC, in xAPIC (memory-mapped) and x2APIC (MSR) mode.
//!
//! Source: Intel SDM Vol. 3A, chapter "Advanced Programmable Interrupt Controller (APIC)" —
//! chapter 11 in the 2023 editions cited here (§11.x); renumbered chapter 12 in later ones.
//! AMD's APM Vol. 2 chapter 16 describes the same registers.
//!
//! The driver ([`Lapic`]) is written once against [`LapicAccess`], a register-level trait with
//! two adapters the kernel picks between at boot:
//! - [`XApic`] over [`Mmio32`]: the 4 KiB page at the base in `IA32_APIC_BASE`
//!   ([`ApicBase`]), which the kernel maps uncached;
//! - [`X2Apic`] over [`Msr`]: MSRs `0x800 + offset / 16` (§11.12.1.2), after
//!   [`enable_x2apic`].
//!
//! The two differ in three places, all inside the adapters or [`Lapic`]: the ID register
//! (xAPIC bits 31:24, §11.4.6; x2APIC all 32 bits), the interrupt command register (xAPIC: two
//! 32-bit writes, high then low, then a bounded wait for the delivery-status bit, §11.6.1;
//! x2APIC: [`Msr::wrmsr_fence`] — x2APIC MSR writes are not serializing, §11.12.3 — then one
//! 64-bit `wrmsr` to 0x830 with no status bit, §11.12.9), and which values may be written
//! (x2APIC raises #GP on a non-zero EOI or ESR write and on registers the LAPIC does not
//! implement — the driver writes zero and consults the maximum LVT entry before touching
//! optional LVTs).
//!
//! **Initialisation order** ([`Lapic::init`]), per CPU, interrupts disabled:
//! 1. (kernel) `IA32_APIC_BASE`: global enable, and x2APIC enable when CPUID.01H:ECX[21] says
//!    so ([`enable_x2apic`]); for xAPIC map [`ApicBase::base`] uncached;
//! 2. (kernel) the legacy PIC remapped and masked ([`crate::pic8259`]);
//! 3. `init`: every LVT masked, TPR 0, software enable with the spurious vector, error status
//!    cleared and the error LVT pointed at its vector, stale in-service bits acknowledged;
//! 4. the timer: [`crate::lapic_timer`].

use crate::access::{ApicMsr, Mmio32, Msr};
use core::fmt;
use rhea_hal::PhysAddr;
use rhea_irq::vectors::Vector;

/// xAPIC register offsets from the APIC base (§11.4.1, table 11-1 "Local APIC Register
/// Address Map"). The x2APIC MSR of each is `0x800 + offset / 16` (§11.12.1.2, table 11-6).
mod offset {
    pub(super) const ID: u16 = 0x020;
    pub(super) const VERSION: u16 = 0x030;
    pub(super) const TASK_PRIORITY: u16 = 0x080;
    pub(super) const EOI: u16 = 0x0b0;
    pub(super) const SPURIOUS_VECTOR: u16 = 0x0f0;
    /// In-service register, bits 31:0; the next seven at +0x10 each.
    pub(super) const IN_SERVICE_0: u16 = 0x100;
    pub(super) const ERROR_STATUS: u16 = 0x280;
    pub(super) const LVT_CMCI: u16 = 0x2f0;
    pub(super) const ICR_LOW: u16 = 0x300;
    pub(super) const ICR_HIGH: u16 = 0x310;
    pub(super) const LVT_TIMER: u16 = 0x320;
    pub(super) const LVT_THERMAL: u16 = 0x330;
    pub(super) const LVT_PERF: u16 = 0x340;
    pub(super) const LVT_LINT0: u16 = 0x350;
    pub(super) const LVT_LINT1: u16 = 0x360;
    pub(super) const LVT_ERROR: u16 = 0x370;
    pub(super) const TIMER_INITIAL_COUNT: u16 = 0x380;
    pub(super) const TIMER_CURRENT_COUNT: u16 = 0x390;
    pub(super) const TIMER_DIVIDE: u16 = 0x3e0;
}

/// LVT mask bit (§11.5.1, figure 11-8).
pub(crate) const LVT_MASKED: u32 = 1 << 16;
/// LVT timer mode, bits 18:17 (§11.5.1, figure 11-8 "Local Vector Table").
const LVT_TIMER_ONE_SHOT: u32 = 0b00 << 17;
const LVT_TIMER_TSC_DEADLINE: u32 = 0b10 << 17;
/// Spurious-interrupt vector register: APIC software enable (§11.9, figure 11-23).
const SVR_APIC_ENABLE: u32 = 1 << 8;
/// ICR fields (§11.6.1, figure 11-12).
const ICR_DELIVERY_FIXED: u32 = 0b000 << 8;
const ICR_DELIVERY_INIT: u32 = 0b101 << 8;
const ICR_DELIVERY_STARTUP: u32 = 0b110 << 8;
/// xAPIC only: 1 while the IPI is being sent.
const ICR_SEND_PENDING: u32 = 1 << 12;
/// Level = assert; required for every delivery mode but INIT level de-assert.
const ICR_LEVEL_ASSERT: u32 = 1 << 14;

/// How many times an xAPIC IPI send polls the delivery-status bit before giving up. A send
/// completes in well under a microsecond on hardware and in one VM exit under a hypervisor
/// (QEMU and KVM never set the bit); this bound is milliseconds.
const ICR_IDLE_POLLS: u32 = 100_000;

/// Most EOIs [`Lapic::init`] sends to clear in-service bits left by firmware: one per vector.
const STALE_IN_SERVICE_EOIS: u32 = 256;

/// A LAPIC register that exists in both modes (the ICR is reached through
/// [`LapicAccess::write_icr`] instead, as its layout differs).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LapicReg {
    /// Local APIC ID.
    Id,
    /// Version, maximum LVT entry, EOI-broadcast suppression.
    Version,
    /// Task priority (TPR).
    TaskPriority,
    /// End of interrupt (write 0).
    Eoi,
    /// Spurious-interrupt vector register (SVR): vector and software enable.
    SpuriousVector,
    /// In-service register `n` (`0..8`, vectors `32n..32n+32`); `n` is taken modulo 8.
    InService(u8),
    /// Error status (ESR); write 0 before reading.
    ErrorStatus,
    /// LVT corrected-machine-check entry (maximum LVT entry ≥ 6).
    LvtCmci,
    /// LVT timer entry.
    LvtTimer,
    /// LVT thermal-sensor entry (maximum LVT entry ≥ 5).
    LvtThermal,
    /// LVT performance-counter entry (maximum LVT entry ≥ 4).
    LvtPerf,
    /// LVT LINT0 entry.
    LvtLint0,
    /// LVT LINT1 entry.
    LvtLint1,
    /// LVT error entry.
    LvtError,
    /// Timer initial count; writing starts (or, with 0, stops) the one-shot count.
    TimerInitialCount,
    /// Timer current count (read only).
    TimerCurrentCount,
    /// Timer divide configuration.
    TimerDivide,
}

impl LapicReg {
    /// Offset from the xAPIC base.
    pub const fn mmio_offset(self) -> usize {
        (match self {
            LapicReg::Id => offset::ID,
            LapicReg::Version => offset::VERSION,
            LapicReg::TaskPriority => offset::TASK_PRIORITY,
            LapicReg::Eoi => offset::EOI,
            LapicReg::SpuriousVector => offset::SPURIOUS_VECTOR,
            LapicReg::InService(n) => offset::IN_SERVICE_0 + 0x10 * (n as u16 & 7),
            LapicReg::ErrorStatus => offset::ERROR_STATUS,
            LapicReg::LvtCmci => offset::LVT_CMCI,
            LapicReg::LvtTimer => offset::LVT_TIMER,
            LapicReg::LvtThermal => offset::LVT_THERMAL,
            LapicReg::LvtPerf => offset::LVT_PERF,
            LapicReg::LvtLint0 => offset::LVT_LINT0,
            LapicReg::LvtLint1 => offset::LVT_LINT1,
            LapicReg::LvtError => offset::LVT_ERROR,
            LapicReg::TimerInitialCount => offset::TIMER_INITIAL_COUNT,
            LapicReg::TimerCurrentCount => offset::TIMER_CURRENT_COUNT,
            LapicReg::TimerDivide => offset::TIMER_DIVIDE,
        }) as usize
    }

    /// The x2APIC MSR: `0x800 + offset / 16`.
    pub const fn x2apic_msr(self) -> ApicMsr {
        ApicMsr::x2apic((self.mmio_offset() >> 4) as u8)
    }
}

/// Which interface the LAPIC is driven through.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LapicMode {
    /// Memory-mapped, 8-bit APIC IDs.
    XApic,
    /// MSRs, 32-bit APIC IDs.
    X2Apic,
}

/// Why a LAPIC operation failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LapicError {
    /// The destination does not fit the mode (xAPIC IDs are 8 bits).
    DestinationOutOfRange(ApicId),
    /// An xAPIC IPI was still pending after the bounded wait.
    IpiNotDelivered,
    /// The LAPIC is in x2APIC mode; leaving it needs a disable first (§11.12.5).
    AlreadyX2Apic,
}

impl fmt::Display for LapicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LapicError::DestinationOutOfRange(id) => {
                write!(f, "APIC ID {} does not fit an xAPIC destination", id.0)
            }
            LapicError::IpiNotDelivered => f.write_str("IPI still pending after the bounded wait"),
            LapicError::AlreadyX2Apic => f.write_str("the local APIC is already in x2APIC mode"),
        }
    }
}

/// Register access to this CPU's LAPIC. Implemented by [`XApic`] and [`X2Apic`]; the kernel
/// does not implement it itself.
pub trait LapicAccess: Sync {
    /// Which interface this is.
    fn mode(&self) -> LapicMode;
    /// Reads `reg`. Touches hardware.
    fn read(&self, reg: LapicReg) -> u32;
    /// Writes `reg`. Touches hardware.
    fn write(&self, reg: LapicReg, value: u32);
    /// Writes the interrupt command register, which sends an IPI: bits 63:32 the destination
    /// field, 31:0 the command. Fails if an xAPIC send does not complete in a bounded wait.
    fn write_icr(&self, value: u64) -> Result<(), LapicError>;
}

impl<T: LapicAccess + ?Sized> LapicAccess for &T {
    fn mode(&self) -> LapicMode {
        (**self).mode()
    }
    fn read(&self, reg: LapicReg) -> u32 {
        (**self).read(reg)
    }
    fn write(&self, reg: LapicReg, value: u32) {
        (**self).write(reg, value)
    }
    fn write_icr(&self, value: u64) -> Result<(), LapicError> {
        (**self).write_icr(value)
    }
}

/// xAPIC: registers in a memory-mapped page.
#[derive(Debug)]
pub struct XApic<M> {
    mmio: M,
}

impl<M: Mmio32> XApic<M> {
    /// The LAPIC at `mmio`: the page at [`ApicBase::base`], mapped uncached (and the same
    /// on every CPU: each CPU sees its own LAPIC there).
    pub const fn new(mmio: M) -> XApic<M> {
        XApic { mmio }
    }
}

impl<M: Mmio32> LapicAccess for XApic<M> {
    fn mode(&self) -> LapicMode {
        LapicMode::XApic
    }

    fn read(&self, reg: LapicReg) -> u32 {
        self.mmio.read32(reg.mmio_offset())
    }

    fn write(&self, reg: LapicReg, value: u32) {
        self.mmio.write32(reg.mmio_offset(), value)
    }

    fn write_icr(&self, value: u64) -> Result<(), LapicError> {
        // The write of the low half sends (§11.6.1), so the destination goes first.
        self.mmio
            .write32(usize::from(offset::ICR_HIGH), (value >> 32) as u32);
        self.mmio
            .write32(usize::from(offset::ICR_LOW), value as u32);
        // RT: at most ICR_IDLE_POLLS reads.
        for _ in 0..ICR_IDLE_POLLS {
            if self.mmio.read32(usize::from(offset::ICR_LOW)) & ICR_SEND_PENDING == 0 {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(LapicError::IpiNotDelivered)
    }
}

/// x2APIC: registers as MSRs.
#[derive(Debug)]
pub struct X2Apic<R> {
    msr: R,
}

/// The x2APIC interrupt command register, one 64-bit MSR (§11.12.9).
const X2APIC_ICR: ApicMsr = ApicMsr::x2apic((offset::ICR_LOW >> 4) as u8);

impl<R: Msr> X2Apic<R> {
    /// The LAPIC through `msr`; the LAPIC must be in x2APIC mode ([`enable_x2apic`]).
    pub const fn new(msr: R) -> X2Apic<R> {
        X2Apic { msr }
    }
}

impl<R: Msr> LapicAccess for X2Apic<R> {
    fn mode(&self) -> LapicMode {
        LapicMode::X2Apic
    }

    fn read(&self, reg: LapicReg) -> u32 {
        self.msr.read_msr(reg.x2apic_msr()) as u32
    }

    fn write(&self, reg: LapicReg, value: u32) {
        self.msr.write_msr(reg.x2apic_msr(), u64::from(value))
    }

    fn write_icr(&self, value: u64) -> Result<(), LapicError> {
        // The write is not serializing (§11.12.3): make what the IPI announces visible first.
        self.msr.wrmsr_fence();
        // One write sends; there is no delivery-status bit to wait for in x2APIC mode.
        self.msr.write_msr(X2APIC_ICR, value);
        Ok(())
    }
}

/// A LAPIC ID as the mode reports it (8 bits in xAPIC mode, 32 in x2APIC mode). Not a
/// [`CpuId`](rhea_hal::CpuId): the SMP layer keeps the mapping.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ApicId(pub u32);

/// `IA32_APIC_BASE` decoded (SDM Vol. 3A §11.4.4, figure 11-5).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ApicBase {
    /// Physical address of the xAPIC register page.
    pub base: PhysAddr,
    /// APIC global enable (bit 11).
    pub is_enabled: bool,
    /// x2APIC mode enable (bit 10).
    pub is_x2apic: bool,
    /// This is the bootstrap processor (bit 8).
    pub is_bsp: bool,
}

const APIC_BASE_BSP: u64 = 1 << 8;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const APIC_BASE_ENABLE: u64 = 1 << 11;
/// Bits 12 up to MAXPHYADDR (at most 52).
const APIC_BASE_ADDRESS: u64 = 0x000f_ffff_ffff_f000;

impl ApicBase {
    /// Decodes the MSR's value.
    pub const fn from_msr(value: u64) -> ApicBase {
        ApicBase {
            base: PhysAddr(value & APIC_BASE_ADDRESS),
            is_enabled: value & APIC_BASE_ENABLE != 0,
            is_x2apic: value & APIC_BASE_X2APIC != 0,
            is_bsp: value & APIC_BASE_BSP != 0,
        }
    }

    /// Reads and decodes `IA32_APIC_BASE`.
    pub fn read(msr: &impl Msr) -> ApicBase {
        ApicBase::from_msr(msr.read_msr(ApicMsr::APIC_BASE))
    }
}

/// Globally enables this CPU's LAPIC in xAPIC mode if firmware left it disabled, and returns
/// the base. Fails if the LAPIC is already in x2APIC mode (leaving x2APIC mode requires
/// disabling the APIC first, §11.12.5, which would lose its state).
pub fn enable_xapic(msr: &impl Msr) -> Result<ApicBase, LapicError> {
    let value = msr.read_msr(ApicMsr::APIC_BASE);
    if value & APIC_BASE_X2APIC != 0 {
        return Err(LapicError::AlreadyX2Apic);
    }
    if value & APIC_BASE_ENABLE == 0 {
        msr.write_msr(ApicMsr::APIC_BASE, value | APIC_BASE_ENABLE);
    }
    Ok(ApicBase::from_msr(value | APIC_BASE_ENABLE))
}

/// Puts this CPU's LAPIC in x2APIC mode (only if CPUID.01H:ECX[21] says the CPU has one): global
/// enable first if needed, then x2APIC enable, as two writes — the xAPIC → x2APIC transition of
/// §11.12.5 "x2APIC State Transitions". Idempotent.
pub fn enable_x2apic(msr: &impl Msr) -> ApicBase {
    let mut value = msr.read_msr(ApicMsr::APIC_BASE);
    if value & APIC_BASE_ENABLE == 0 {
        value |= APIC_BASE_ENABLE;
        msr.write_msr(ApicMsr::APIC_BASE, value);
    }
    if value & APIC_BASE_X2APIC == 0 {
        value |= APIC_BASE_X2APIC;
        msr.write_msr(ApicMsr::APIC_BASE, value);
    }
    ApicBase::from_msr(value)
}

/// The version register decoded (§11.4.8, figure 11-7).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LapicVersion {
    /// 0x1X for an integrated APIC (0x14 on QEMU, 0x15 on recent Intel parts).
    pub version: u8,
    /// Number of LVT entries minus one: 3 (timer, LINT0, LINT1, error) + performance (≥ 4) +
    /// thermal (≥ 5) + CMCI (≥ 6).
    pub max_lvt_entry: u8,
    /// Whether EOI-broadcast suppression is supported (bit 24).
    pub has_eoi_broadcast_suppression: bool,
}

impl LapicVersion {
    /// Decodes the register.
    pub const fn from_register(value: u32) -> LapicVersion {
        LapicVersion {
            version: value as u8,
            max_lvt_entry: (value >> 16) as u8,
            has_eoi_broadcast_suppression: value & (1 << 24) != 0,
        }
    }
}

/// How [`Lapic::init`] sets the LAPIC up.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LapicConfig {
    /// Delivered when an interrupt is withdrawn between signalling and acknowledgement; never
    /// acknowledged with an EOI. Its low four bits should be ones (P6 family).
    pub spurious_vector: Vector,
    /// Where LAPIC internal errors go; `None` leaves the error LVT masked.
    pub error_vector: Option<Vector>,
}

impl LapicConfig {
    /// [`SPURIOUS`](rhea_irq::vectors::SPURIOUS), errors to
    /// [`LAPIC_ERROR`](rhea_irq::vectors::LAPIC_ERROR).
    pub const DEFAULT: LapicConfig = LapicConfig {
        spurious_vector: rhea_irq::vectors::SPURIOUS,
        error_vector: Some(rhea_irq::vectors::LAPIC_ERROR),
    };
}

/// What [`Lapic::init`] found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LapicInfo {
    /// This CPU's APIC ID.
    pub id: ApicId,
    /// The version register.
    pub version: LapicVersion,
    /// EOIs sent to clear in-service bits firmware left set.
    pub stale_eois: u32,
}

/// The LAPIC timer's clock divider (§11.5.4, figure 11-10).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TimerDivide {
    /// Divide by 1.
    By1,
    /// Divide by 2.
    By2,
    /// Divide by 4.
    By4,
    /// Divide by 8.
    By8,
    /// Divide by 16 (Linux's choice: 62.5 MHz on QEMU and KVM's 1 GHz bus, 68 s of range).
    By16,
    /// Divide by 32.
    By32,
    /// Divide by 64.
    By64,
    /// Divide by 128.
    By128,
}

impl TimerDivide {
    /// The divide configuration register's value: bits 3, 1 and 0 (bit 2 is reserved).
    pub const fn register_bits(self) -> u32 {
        match self {
            TimerDivide::By2 => 0b0000,
            TimerDivide::By4 => 0b0001,
            TimerDivide::By8 => 0b0010,
            TimerDivide::By16 => 0b0011,
            TimerDivide::By32 => 0b1000,
            TimerDivide::By64 => 0b1001,
            TimerDivide::By128 => 0b1010,
            TimerDivide::By1 => 0b1011,
        }
    }

    /// The divisor.
    pub const fn divisor(self) -> u32 {
        match self {
            TimerDivide::By1 => 1,
            TimerDivide::By2 => 2,
            TimerDivide::By4 => 4,
            TimerDivide::By8 => 8,
            TimerDivide::By16 => 16,
            TimerDivide::By32 => 32,
            TimerDivide::By64 => 64,
            TimerDivide::By128 => 128,
        }
    }
}

/// This CPU's local APIC. One value serves every CPU (the registers are per CPU at the same
/// address or MSR), so the kernel keeps one in a `static`; every method acts on the LAPIC of
/// the CPU that calls it, and must be called with interrupts disabled or from a thread pinned
/// to its CPU.
#[derive(Debug)]
pub struct Lapic<A> {
    access: A,
}

impl<A: LapicAccess> Lapic<A> {
    /// The LAPIC behind `access` ([`XApic`] or [`X2Apic`]).
    pub const fn new(access: A) -> Lapic<A> {
        Lapic { access }
    }

    /// The register access, for what this driver does not cover.
    pub const fn access(&self) -> &A {
        &self.access
    }

    /// Which interface drives it.
    pub fn mode(&self) -> LapicMode {
        self.access.mode()
    }

    /// Sets this CPU's LAPIC up (step 3 of the module documentation): every LVT masked, task
    /// priority 0, software-enabled with `config.spurious_vector`, error status cleared, the
    /// error LVT pointed at `config.error_vector`, and stale in-service bits acknowledged. The
    /// timer stays masked until [`crate::lapic_timer`] programs it.
    pub fn init(&self, config: &LapicConfig) -> LapicInfo {
        let version = self.read_version();
        // Mask every local source first, so nothing is delivered the moment the APIC is
        // enabled. LINT0 (ExtINT from the 8259 in virtual-wire mode) and LINT1 (NMI) are
        // what firmware typically left programmed; Rhea uses neither.
        self.access.write(LapicReg::LvtTimer, LVT_MASKED);
        self.access.write(LapicReg::LvtLint0, LVT_MASKED);
        self.access.write(LapicReg::LvtLint1, LVT_MASKED);
        self.access.write(LapicReg::LvtError, LVT_MASKED);
        // Optional entries exist only up to the maximum LVT entry (§11.4.8); touching an absent
        // one faults in x2APIC mode.
        if version.max_lvt_entry >= 4 {
            self.access.write(LapicReg::LvtPerf, LVT_MASKED);
        }
        if version.max_lvt_entry >= 5 {
            self.access.write(LapicReg::LvtThermal, LVT_MASKED);
        }
        if version.max_lvt_entry >= 6 {
            self.access.write(LapicReg::LvtCmci, LVT_MASKED);
        }
        // Accept every priority class (§11.8.3.1).
        self.access.write(LapicReg::TaskPriority, 0);
        self.access.write(
            LapicReg::SpuriousVector,
            SVR_APIC_ENABLE | u32::from(config.spurious_vector.get()),
        );
        // The ESR latches on a write; two back-to-back writes clear whatever was latched before
        // (§11.5.3). Only 0 may be written in x2APIC mode.
        self.access.write(LapicReg::ErrorStatus, 0);
        self.access.write(LapicReg::ErrorStatus, 0);
        if let Some(v) = config.error_vector {
            self.access.write(LapicReg::LvtError, u32::from(v.get()));
        }
        let stale_eois = self.acknowledge_stale_interrupts();
        LapicInfo {
            id: self.read_id(),
            version,
            stale_eois,
        }
    }

    /// EOIs until no in-service bit is set (each EOI clears the highest one, §11.8.5).
    fn acknowledge_stale_interrupts(&self) -> u32 {
        // RT: boot only; at most STALE_IN_SERVICE_EOIS rounds of 8 reads.
        for sent in 0..STALE_IN_SERVICE_EOIS {
            if (0..8).all(|n| self.access.read(LapicReg::InService(n)) == 0) {
                return sent;
            }
            self.eoi();
        }
        STALE_IN_SERVICE_EOIS
    }

    /// Signals the end of the interrupt being handled. Not for the spurious vector.
    pub fn eoi(&self) {
        self.access.write(LapicReg::Eoi, 0);
    }

    /// This CPU's APIC ID.
    pub fn read_id(&self) -> ApicId {
        let raw = self.access.read(LapicReg::Id);
        ApicId(match self.access.mode() {
            LapicMode::XApic => raw >> 24,
            LapicMode::X2Apic => raw,
        })
    }

    /// The version register.
    pub fn read_version(&self) -> LapicVersion {
        LapicVersion::from_register(self.access.read(LapicReg::Version))
    }

    /// Sets the task priority (0 accepts everything; class `n` blocks vectors `< 16(n+1)`).
    pub fn set_task_priority(&self, priority: u8) {
        self.access
            .write(LapicReg::TaskPriority, u32::from(priority));
    }

    /// The errors latched since the last call (§11.5.3): write, then read.
    pub fn read_error_status(&self) -> u32 {
        self.access.write(LapicReg::ErrorStatus, 0);
        self.access.read(LapicReg::ErrorStatus)
    }

    /// Masks LINT0 and LINT1 (the legacy PIC's ExtINT and NMI pins).
    pub fn mask_lint(&self) {
        self.access.write(LapicReg::LvtLint0, LVT_MASKED);
        self.access.write(LapicReg::LvtLint1, LVT_MASKED);
    }

    /// Masks the error LVT.
    pub fn mask_error(&self) {
        self.access.write(LapicReg::LvtError, LVT_MASKED);
    }

    /// Timer in one-shot mode on `vector`, unmasked, with `divide`; not started (a write of
    /// the initial count starts it, [`set_timer_initial_count`](Self::set_timer_initial_count)).
    pub fn set_timer_one_shot(&self, vector: Vector, divide: TimerDivide) {
        self.access
            .write(LapicReg::TimerDivide, divide.register_bits());
        self.access.write(
            LapicReg::LvtTimer,
            LVT_TIMER_ONE_SHOT | u32::from(vector.get()),
        );
    }

    /// Timer in one-shot mode, masked: counts without interrupting (for calibration).
    pub fn set_timer_one_shot_masked(&self, vector: Vector, divide: TimerDivide) {
        self.access
            .write(LapicReg::TimerDivide, divide.register_bits());
        self.access.write(
            LapicReg::LvtTimer,
            LVT_MASKED | LVT_TIMER_ONE_SHOT | u32::from(vector.get()),
        );
    }

    /// Starts a one-shot count of `count` timer ticks; 0 stops the timer (§11.5.4).
    pub fn set_timer_initial_count(&self, count: u32) {
        self.access.write(LapicReg::TimerInitialCount, count);
    }

    /// Ticks left in the current one-shot count.
    pub fn read_timer_current_count(&self) -> u32 {
        self.access.read(LapicReg::TimerCurrentCount)
    }

    /// Timer in TSC-deadline mode on `vector`, unmasked (only if CPUID.01H:ECX[24] says the
    /// CPU has it). Afterwards the timer is armed by writing the TSC deadline to
    /// `IA32_TSC_DEADLINE` ([`ApicMsr::TSC_DEADLINE`]).
    ///
    /// §11.5.4.1: in xAPIC mode the memory-mapped LVT write and a later `wrmsr` of the deadline
    /// are not ordered, and software must put an `MFENCE` between them: call
    /// [`Msr::wrmsr_fence`] before the first deadline write
    /// ([`LapicTimer::init_this_cpu`](crate::lapic_timer::LapicTimer::init_this_cpu) does).
    pub fn set_timer_tsc_deadline(&self, vector: Vector) {
        self.access.write(
            LapicReg::LvtTimer,
            LVT_TIMER_TSC_DEADLINE | u32::from(vector.get()),
        );
    }

    /// Masks the timer LVT, keeping its mode and vector.
    pub fn mask_timer(&self) {
        let lvt = self.access.read(LapicReg::LvtTimer);
        self.access.write(LapicReg::LvtTimer, lvt | LVT_MASKED);
    }

    /// Sends `vector` to the CPU with APIC ID `dest`: fixed delivery, physical destination,
    /// edge, no shorthand.
    pub fn send_ipi(&self, dest: ApicId, vector: Vector) -> Result<(), LapicError> {
        self.send(
            dest,
            ICR_DELIVERY_FIXED | ICR_LEVEL_ASSERT | u32::from(vector.get()),
        )
    }

    /// Sends INIT to `dest` (CPU bring-up, §8.4.4.1 / §9.4.4.1 "Typical BSP Initialization
    /// Sequence"; the level de-assert is not needed on processors after the Pentium 4).
    pub fn send_init(&self, dest: ApicId) -> Result<(), LapicError> {
        self.send(dest, ICR_DELIVERY_INIT | ICR_LEVEL_ASSERT)
    }

    /// Sends a start-up IPI to `dest`: it starts in real mode at `start_page × 4 KiB` (so below
    /// 1 MiB).
    pub fn send_startup(&self, dest: ApicId, start_page: u8) -> Result<(), LapicError> {
        self.send(
            dest,
            ICR_DELIVERY_STARTUP | ICR_LEVEL_ASSERT | u32::from(start_page),
        )
    }

    fn send(&self, dest: ApicId, command: u32) -> Result<(), LapicError> {
        let destination = match self.access.mode() {
            LapicMode::XApic if dest.0 > 0xff => {
                return Err(LapicError::DestinationOutOfRange(dest));
            }
            // Destination field: ICR bits 63:56 (§11.6.1).
            LapicMode::XApic => dest.0 << 24,
            // Destination field: ICR bits 63:32 (§11.12.9).
            LapicMode::X2Apic => dest.0,
        };
        self.access
            .write_icr(u64::from(destination) << 32 | u64::from(command))
    }
}

/// Register-level models of the LAPIC in both modes, with a timer that counts down against a
/// fake TSC. Shared with the timer tests.
#[cfg(test)]
pub(crate) mod model {
    use super::*;
    use core::sync::atomic::Ordering;
    use rhea_timers::CycleCounter;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A fake TSC that advances `per_read` ticks on every read.
    #[derive(Debug)]
    pub(crate) struct FakeTsc {
        pub(crate) now: std::sync::atomic::AtomicU64,
        pub(crate) per_read: u64,
    }

    impl FakeTsc {
        pub(crate) fn new(start: u64, per_read: u64) -> FakeTsc {
            FakeTsc {
                now: std::sync::atomic::AtomicU64::new(start),
                per_read,
            }
        }
        pub(crate) fn peek(&self) -> u64 {
            self.now.load(Ordering::Relaxed)
        }
    }

    impl CycleCounter for FakeTsc {
        fn read(&self) -> u64 {
            self.now.fetch_add(self.per_read, Ordering::Relaxed) + self.per_read
        }
    }

    /// The register file, keyed by xAPIC offset, and what happened to it.
    #[derive(Debug)]
    pub(crate) struct Core {
        pub(crate) regs: HashMap<u16, u32>,
        /// Every write, as (offset, value); the ICR as two entries (high, then low).
        pub(crate) writes: Vec<(u16, u32)>,
        /// In-service bits, one `u32` per register.
        pub(crate) in_service: [u32; 8],
        /// Reads of the xAPIC ICR that still show "send pending"; `u32::MAX` = forever.
        pub(crate) icr_busy_reads: u32,
        /// Timer: bus ticks per TSC tick, as a ratio (`bus_hz`, `tsc_hz`); `None` = dead timer.
        pub(crate) timer_rate: Option<(u64, u64)>,
        timer_loaded_at_tsc: u64,
        timer_initial: u32,
        pub(crate) deadline_msr: Vec<u64>,
    }

    /// A LAPIC model, reachable as xAPIC (offsets) or x2APIC (MSRs).
    #[derive(Debug)]
    pub(crate) struct Model<'t> {
        pub(crate) core: Mutex<Core>,
        pub(crate) tsc: &'t FakeTsc,
    }

    pub(crate) const QEMU_VERSION: u32 = 0x0005_0014;
    /// In the write log: `Msr::wrmsr_fence`.
    pub(crate) const FENCE_MARK: u16 = 0xffe;
    /// In the write log: a write of `IA32_TSC_DEADLINE` (low 32 bits).
    pub(crate) const DEADLINE_MARK: u16 = 0x6e0;

    impl<'t> Model<'t> {
        pub(crate) fn new(id: u32, version: u32, tsc: &'t FakeTsc) -> Model<'t> {
            let mut regs = HashMap::new();
            regs.insert(offset::ID, id);
            regs.insert(offset::VERSION, version);
            for lvt in [
                offset::LVT_TIMER,
                offset::LVT_LINT0,
                offset::LVT_LINT1,
                offset::LVT_ERROR,
                offset::LVT_PERF,
                offset::LVT_THERMAL,
                offset::LVT_CMCI,
            ] {
                regs.insert(lvt, LVT_MASKED);
            }
            Model {
                core: Mutex::new(Core {
                    regs,
                    writes: Vec::new(),
                    in_service: [0; 8],
                    icr_busy_reads: 0,
                    timer_rate: Some((1_000_000_000, 1_000_000_000)),
                    timer_loaded_at_tsc: 0,
                    timer_initial: 0,
                    deadline_msr: Vec::new(),
                }),
                tsc,
            }
        }

        pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Core) -> R) -> R {
            f(&mut self.core.lock().unwrap())
        }

        pub(crate) fn writes(&self) -> Vec<(u16, u32)> {
            self.with(|c| c.writes.clone())
        }

        fn max_lvt(c: &Core) -> u32 {
            (c.regs[&offset::VERSION] >> 16) & 0xff
        }

        /// Whether `off` is a register this LAPIC implements.
        fn exists(c: &Core, off: u16) -> bool {
            match off {
                offset::LVT_PERF => Self::max_lvt(c) >= 4,
                offset::LVT_THERMAL => Self::max_lvt(c) >= 5,
                offset::LVT_CMCI => Self::max_lvt(c) >= 6,
                _ => true,
            }
        }

        fn read_reg(&self, off: u16) -> u32 {
            let now = self.tsc.peek();
            self.with(|c| {
                assert!(Self::exists(c, off), "read of absent register {off:#x}");
                match off {
                    o if (offset::IN_SERVICE_0..offset::IN_SERVICE_0 + 0x80).contains(&o) => {
                        c.in_service[usize::from((o - offset::IN_SERVICE_0) / 0x10)]
                    }
                    offset::ICR_LOW => {
                        let low = c.regs.get(&off).copied().unwrap_or(0);
                        if c.icr_busy_reads > 0 {
                            if c.icr_busy_reads != u32::MAX {
                                c.icr_busy_reads -= 1;
                            }
                            low | ICR_SEND_PENDING
                        } else {
                            low & !ICR_SEND_PENDING
                        }
                    }
                    offset::TIMER_CURRENT_COUNT => match c.timer_rate {
                        None => c.timer_initial,
                        Some((bus_hz, tsc_hz)) => {
                            let divide =
                                match c.regs.get(&offset::TIMER_DIVIDE).copied().unwrap_or(0) {
                                    0b1011 => 1,
                                    bits => 2u64 << ((bits & 0b11) | ((bits >> 1) & 0b100)),
                                };
                            let elapsed_tsc = now - c.timer_loaded_at_tsc;
                            let ticks = u128::from(elapsed_tsc) * u128::from(bus_hz)
                                / u128::from(tsc_hz)
                                / u128::from(divide);
                            u64::from(c.timer_initial).saturating_sub(ticks as u64) as u32
                        }
                    },
                    _ => c.regs.get(&off).copied().unwrap_or(0),
                }
            })
        }

        fn write_reg(&self, off: u16, value: u32) {
            let now = self.tsc.peek();
            self.with(|c| {
                assert!(Self::exists(c, off), "write of absent register {off:#x}");
                c.writes.push((off, value));
                match off {
                    offset::EOI => {
                        if let Some(i) = (0..8).rev().find(|&i| c.in_service[i] != 0) {
                            let top = 31 - c.in_service[i].leading_zeros();
                            c.in_service[i] &= !(1 << top);
                        }
                    }
                    offset::TIMER_INITIAL_COUNT => {
                        c.timer_initial = value;
                        c.timer_loaded_at_tsc = now;
                    }
                    offset::ID | offset::VERSION | offset::TIMER_CURRENT_COUNT => {
                        panic!("write to read-only {off:#x}")
                    }
                    _ => {
                        c.regs.insert(off, value);
                    }
                }
            })
        }
    }

    impl Mmio32 for Model<'_> {
        fn read32(&self, off: usize) -> u32 {
            assert!(
                off.is_multiple_of(16) && off < 0x1000,
                "xAPIC registers are 16-byte aligned in the page"
            );
            self.read_reg(off as u16)
        }
        fn write32(&self, off: usize, value: u32) {
            assert!(off.is_multiple_of(16) && off < 0x1000);
            self.write_reg(off as u16, value)
        }
    }

    impl Msr for Model<'_> {
        fn read_msr(&self, msr: ApicMsr) -> u64 {
            match msr.number() {
                0x1b => {
                    u64::from(self.with(|c| c.regs.get(&0xfff).copied().unwrap_or(0xfee0_0900)))
                }
                0x830 => panic!("the x2APIC ICR is written, not polled"),
                n @ 0x800..=0x8ff => u64::from(self.read_reg(((n - 0x800) << 4) as u16)),
                n => panic!("MSR {n:#x} is not modelled"),
            }
        }
        fn wrmsr_fence(&self) {
            self.with(|c| c.writes.push((FENCE_MARK, 0)));
        }
        fn write_msr(&self, msr: ApicMsr, value: u64) {
            match msr.number() {
                0x1b => self.with(|c| {
                    c.regs.insert(0xfff, value as u32);
                    c.writes.push((0xfff, value as u32));
                }),
                0x6e0 => self.with(|c| {
                    c.deadline_msr.push(value);
                    c.writes.push((DEADLINE_MARK, value as u32));
                }),
                0x830 => self.with(|c| {
                    c.writes.push((offset::ICR_HIGH, (value >> 32) as u32));
                    c.writes.push((offset::ICR_LOW, value as u32));
                }),
                0x831 => panic!("#GP: there is no ICR high half in x2APIC mode"),
                n @ 0x800..=0x8ff => {
                    let off = ((n - 0x800) << 4) as u16;
                    // x2APIC #GP conditions (§11.12.1.2): non-zero EOI or ESR writes, value
                    // above 32 bits.
                    assert!(value >> 32 == 0, "#GP: reserved bits");
                    if off == offset::EOI || off == offset::ERROR_STATUS {
                        assert_eq!(value, 0, "#GP: non-zero write to {off:#x}");
                    }
                    self.write_reg(off, value as u32)
                }
                n => panic!("MSR {n:#x} is not modelled"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::model::{FENCE_MARK, FakeTsc, Model, QEMU_VERSION};
    use super::*;
    use rhea_irq::vectors::{IPI_RESCHEDULE, LAPIC_ERROR, LAPIC_TIMER, SPURIOUS};

    fn position(writes: &[(u16, u32)], entry: (u16, u32)) -> usize {
        writes
            .iter()
            .position(|&w| w == entry)
            .unwrap_or_else(|| panic!("{entry:x?} not written: {writes:x?}"))
    }

    fn check_init(writes: &[(u16, u32)], info: &LapicInfo, expected_id: u32) {
        let enable = position(writes, (offset::SPURIOUS_VECTOR, 0x1ff));
        for lvt in [
            offset::LVT_TIMER,
            offset::LVT_LINT0,
            offset::LVT_LINT1,
            offset::LVT_PERF,
            offset::LVT_THERMAL,
        ] {
            assert!(
                position(writes, (lvt, LVT_MASKED)) < enable,
                "LVT {lvt:#x} masked before enabling"
            );
        }
        assert!(position(writes, (offset::TASK_PRIORITY, 0)) < enable);
        let esr = position(writes, (offset::ERROR_STATUS, 0));
        assert_eq!(
            writes[esr + 1],
            (offset::ERROR_STATUS, 0),
            "ESR written twice back to back"
        );
        assert!(position(writes, (offset::LVT_ERROR, u32::from(LAPIC_ERROR.get()))) > esr);
        assert!(
            !writes.iter().any(|&(o, _)| o == offset::LVT_CMCI),
            "no CMCI LVT on this version"
        );
        assert_eq!(info.id, ApicId(expected_id));
        assert_eq!(info.version.max_lvt_entry, 5);
        assert_eq!(info.stale_eois, 3);
    }

    #[test]
    fn xapic_init_masks_then_enables_and_clears_stale_interrupts() {
        let tsc = FakeTsc::new(0, 1);
        let m = Model::new(3 << 24, QEMU_VERSION, &tsc);
        m.with(|c| c.in_service = [0, 1 << 3 | 1 << 9, 0, 0, 0, 0, 0, 1 << 31]);
        let lapic = Lapic::new(XApic::new(&m));
        let info = lapic.init(&LapicConfig::DEFAULT);
        check_init(&m.writes(), &info, 3);
        assert_eq!(m.with(|c| c.in_service), [0; 8]);
        assert_eq!(lapic.mode(), LapicMode::XApic);
    }

    #[test]
    fn x2apic_init_writes_only_what_x2apic_accepts() {
        let tsc = FakeTsc::new(0, 1);
        let m = Model::new(0x1234, QEMU_VERSION, &tsc);
        m.with(|c| c.in_service = [0, 0, 0, 0, 1 << 1 | 1 << 2 | 1 << 4, 0, 0, 0]);
        let lapic = Lapic::new(X2Apic::new(&m));
        let info = lapic.init(&LapicConfig::DEFAULT);
        check_init(&m.writes(), &info, 0x1234);
    }

    #[test]
    fn optional_lvts_follow_the_version_register() {
        let tsc = FakeTsc::new(0, 1);
        // Pentium-class: 4 LVT entries. The model panics on a touch of an absent register.
        let m = Model::new(0, 0x0003_0014, &tsc);
        Lapic::new(X2Apic::new(&m)).init(&LapicConfig {
            spurious_vector: SPURIOUS,
            error_vector: None,
        });
        let w = m.writes();
        assert!(
            !w.iter()
                .any(|&(o, _)| o == offset::LVT_PERF || o == offset::LVT_THERMAL)
        );
        assert_eq!(
            w.iter().filter(|&&(o, _)| o == offset::LVT_ERROR).count(),
            1,
            "error LVT left masked"
        );
        // Nehalem and later: 7 entries, CMCI masked too.
        let m = Model::new(0, 0x0106_0015, &tsc);
        let info = Lapic::new(XApic::new(&m)).init(&LapicConfig::DEFAULT);
        assert!(m.writes().contains(&(offset::LVT_CMCI, LVT_MASKED)));
        assert!(info.version.has_eoi_broadcast_suppression);
    }

    #[test]
    fn register_maps_agree_between_modes() {
        assert_eq!(LapicReg::SpuriousVector.x2apic_msr().number(), 0x80f);
        assert_eq!(LapicReg::ErrorStatus.x2apic_msr().number(), 0x828);
        assert_eq!(LapicReg::LvtTimer.x2apic_msr().number(), 0x832);
        assert_eq!(LapicReg::TimerInitialCount.x2apic_msr().number(), 0x838);
        assert_eq!(LapicReg::TimerDivide.x2apic_msr().number(), 0x83e);
        assert_eq!(LapicReg::InService(7).mmio_offset(), 0x170);
        assert_eq!(
            LapicReg::InService(9).mmio_offset(),
            0x110,
            "taken modulo 8"
        );
        assert_eq!(X2APIC_ICR.number(), 0x830);
    }

    #[test]
    fn xapic_ipi_writes_high_then_low_and_waits() {
        let tsc = FakeTsc::new(0, 1);
        let m = Model::new(0, QEMU_VERSION, &tsc);
        m.with(|c| c.icr_busy_reads = 5);
        let lapic = Lapic::new(XApic::new(&m));
        lapic.send_ipi(ApicId(2), IPI_RESCHEDULE).unwrap();
        assert_eq!(
            m.writes(),
            [
                (offset::ICR_HIGH, 2 << 24),
                (offset::ICR_LOW, 0x4000 | 0xfd)
            ]
        );
        assert_eq!(m.with(|c| c.icr_busy_reads), 0, "waited for delivery");
    }

    #[test]
    fn xapic_ipi_gives_up_on_a_stuck_delivery_status() {
        let tsc = FakeTsc::new(0, 1);
        let m = Model::new(0, QEMU_VERSION, &tsc);
        m.with(|c| c.icr_busy_reads = u32::MAX);
        assert_eq!(
            Lapic::new(XApic::new(&m)).send_ipi(ApicId(1), IPI_RESCHEDULE),
            Err(LapicError::IpiNotDelivered)
        );
    }

    #[test]
    fn xapic_destinations_are_eight_bits() {
        let tsc = FakeTsc::new(0, 1);
        let m = Model::new(0, QEMU_VERSION, &tsc);
        let lapic = Lapic::new(XApic::new(&m));
        assert_eq!(
            lapic.send_ipi(ApicId(256), IPI_RESCHEDULE),
            Err(LapicError::DestinationOutOfRange(ApicId(256)))
        );
        assert!(m.writes().is_empty());
    }

    #[test]
    fn x2apic_ipi_is_one_write_with_a_32_bit_destination() {
        let tsc = FakeTsc::new(0, 1);
        let m = Model::new(0, QEMU_VERSION, &tsc);
        let lapic = Lapic::new(X2Apic::new(&m));
        lapic.send_ipi(ApicId(0x1_0002), IPI_RESCHEDULE).unwrap();
        assert_eq!(
            m.writes(),
            [
                (FENCE_MARK, 0),
                (offset::ICR_HIGH, 0x1_0002),
                (offset::ICR_LOW, 0x40fd)
            ],
            "fenced, then one 64-bit write"
        );
    }

    #[test]
    fn init_and_startup_ipis() {
        let tsc = FakeTsc::new(0, 1);
        let m = Model::new(0, QEMU_VERSION, &tsc);
        let lapic = Lapic::new(XApic::new(&m));
        lapic.send_init(ApicId(1)).unwrap();
        lapic.send_startup(ApicId(1), 0x08).unwrap();
        let w = m.writes();
        assert_eq!(w[1], (offset::ICR_LOW, 0x4500));
        assert_eq!(w[3], (offset::ICR_LOW, 0x4608), "start at 0x8000");
    }

    #[test]
    fn eoi_error_status_priority_and_masks() {
        let tsc = FakeTsc::new(0, 1);
        let m = Model::new(0, QEMU_VERSION, &tsc);
        m.with(|c| {
            c.regs.insert(offset::ERROR_STATUS, 0x80);
            c.regs.insert(offset::LVT_TIMER, 0x200ef);
        });
        let lapic = Lapic::new(X2Apic::new(&m));
        lapic.eoi();
        assert_eq!(
            lapic.read_error_status(),
            0,
            "the model keeps the written 0"
        );
        lapic.set_task_priority(0x20);
        lapic.mask_timer();
        lapic.mask_lint();
        lapic.mask_error();
        assert_eq!(
            m.writes(),
            [
                (offset::EOI, 0),
                (offset::ERROR_STATUS, 0),
                (offset::TASK_PRIORITY, 0x20),
                (offset::LVT_TIMER, 0x300ef),
                (offset::LVT_LINT0, LVT_MASKED),
                (offset::LVT_LINT1, LVT_MASKED),
                (offset::LVT_ERROR, LVT_MASKED),
            ]
        );
    }

    #[test]
    fn timer_modes_and_divide_encoding() {
        let tsc = FakeTsc::new(0, 1);
        let m = Model::new(0, QEMU_VERSION, &tsc);
        let lapic = Lapic::new(XApic::new(&m));
        lapic.set_timer_one_shot(LAPIC_TIMER, TimerDivide::By16);
        lapic.set_timer_tsc_deadline(LAPIC_TIMER);
        lapic.set_timer_one_shot_masked(LAPIC_TIMER, TimerDivide::By1);
        assert_eq!(
            m.writes(),
            [
                (offset::TIMER_DIVIDE, 0b0011),
                (offset::LVT_TIMER, 0xef),
                (offset::LVT_TIMER, 0x4_00ef),
                (offset::TIMER_DIVIDE, 0b1011),
                (offset::LVT_TIMER, 0x1_00ef),
            ]
        );
        let all = [
            TimerDivide::By1,
            TimerDivide::By2,
            TimerDivide::By4,
            TimerDivide::By8,
            TimerDivide::By16,
            TimerDivide::By32,
            TimerDivide::By64,
            TimerDivide::By128,
        ];
        for (i, d) in all.iter().enumerate() {
            assert_eq!(d.divisor(), 1 << i);
            assert_eq!(d.register_bits() & 0b100, 0, "bit 2 is reserved");
        }
    }

    #[test]
    fn apic_base_decoding_and_mode_switches() {
        let b = ApicBase::from_msr(0xfee0_0900);
        assert_eq!(
            b,
            ApicBase {
                base: PhysAddr(0xfee0_0000),
                is_enabled: true,
                is_x2apic: false,
                is_bsp: true
            }
        );
        assert_eq!(
            ApicBase::from_msr(u64::MAX).base,
            PhysAddr(0x000f_ffff_ffff_f000)
        );

        let tsc = FakeTsc::new(0, 1);
        let m = Model::new(0, QEMU_VERSION, &tsc);
        // Disabled by firmware: enable, then x2APIC, as two writes.
        m.with(|c| c.regs.insert(0xfff, 0xfee0_0100));
        let b = enable_x2apic(&m);
        assert!(b.is_enabled && b.is_x2apic && b.is_bsp);
        assert_eq!(m.writes(), [(0xfff, 0xfee0_0900), (0xfff, 0xfee0_0d00)]);
        enable_x2apic(&m);
        assert_eq!(m.writes().len(), 2, "idempotent");
        assert_eq!(ApicBase::read(&m), b);
        assert_eq!(enable_xapic(&m), Err(LapicError::AlreadyX2Apic));

        let m = Model::new(0, QEMU_VERSION, &tsc);
        m.with(|c| c.regs.insert(0xfff, 0xfee0_0000));
        assert_eq!(enable_xapic(&m).unwrap().base, PhysAddr(0xfee0_0000));
        assert_eq!(m.writes(), [(0xfff, 0xfee0_0800)]);
    }
}
