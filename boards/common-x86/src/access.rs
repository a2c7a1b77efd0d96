//! How the controllers reach their registers: traits the kernel implements with `rhea-arch`
//! primitives. This crate executes no `in`/`out`/`rdmsr`/`wrmsr` and touches no memory-mapped
//! register itself, so it is hardware-free at the type level and tested on the host against
//! models of the devices.
//!
//! The traits are safe to call; the unsafety of the underlying instructions is discharged by
//! the kernel when it *constructs* an implementation (mapping the page uncached, checking
//! CPUID). Each trait is narrowed so that this crate cannot be used to reach more than the
//! controllers: MSRs are named by [`ApicMsr`], which only this crate can construct and only
//! for the APIC's own MSRs.

use core::fmt;

/// 32-bit memory-mapped registers of one device (a LAPIC page, an IOAPIC window).
///
/// `offset` is in bytes from the device's base, 4-byte aligned, and inside the window the
/// kernel mapped (4 KiB for the LAPIC, 0x20 bytes for the IOAPIC); an implementation may
/// assert both. Accesses must be single, volatile, 32-bit loads and stores to an uncached
/// mapping, in program order.
pub trait Mmio32: Sync {
    /// Loads the register at `offset`. Touches hardware.
    fn read32(&self, offset: usize) -> u32;
    /// Stores `value` to the register at `offset`. Touches hardware.
    fn write32(&self, offset: usize, value: u32);
}

impl<T: Mmio32 + ?Sized> Mmio32 for &T {
    fn read32(&self, offset: usize) -> u32 {
        (**self).read32(offset)
    }
    fn write32(&self, offset: usize, value: u32) {
        (**self).write32(offset, value)
    }
}

/// Model-specific registers of the current CPU (`rdmsr`/`wrmsr`), restricted to [`ApicMsr`].
///
/// The kernel's `write_msr` and `wrmsr_fence` must be `asm!` blocks **without**
/// `options(nomem)`, so the compiler keeps them in program order with the memory accesses
/// around them.
pub trait Msr: Sync {
    /// `rdmsr`. Touches hardware.
    fn read_msr(&self, msr: ApicMsr) -> u64;
    /// `wrmsr`. Touches hardware.
    fn write_msr(&self, msr: ApicMsr, value: u64);
    /// Makes every earlier store — to memory and to memory-mapped registers — globally
    /// visible before the next `wrmsr` executes: `mfence; lfence` on x86.
    ///
    /// Needed because writes to the x2APIC MSRs and to `IA32_TSC_DEADLINE` are not serializing
    /// (SDM Vol. 3A §11.12.3): without it an IPI could reach another CPU before the run-queue
    /// update it announces, and a TSC deadline could be written before the memory-mapped LVT
    /// store that selects TSC-deadline mode (§11.5.4.1). This crate calls it where the SDM
    /// asks for it.
    fn wrmsr_fence(&self);
}

impl<T: Msr + ?Sized> Msr for &T {
    fn read_msr(&self, msr: ApicMsr) -> u64 {
        (**self).read_msr(msr)
    }
    fn write_msr(&self, msr: ApicMsr, value: u64) {
        (**self).write_msr(msr, value)
    }
    fn wrmsr_fence(&self) {
        (**self).wrmsr_fence()
    }
}

/// An MSR this crate may access: `IA32_APIC_BASE`, `IA32_TSC_DEADLINE`, or one of the x2APIC
/// registers `0x800..=0x8ff` (SDM Vol. 4, "Model-Specific Registers", architectural MSRs).
/// Only this crate constructs it, so an [`Msr`] implementation handed to it can touch nothing
/// else.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApicMsr(u32);

impl ApicMsr {
    /// `IA32_APIC_BASE` (0x1b): base address, global enable, x2APIC enable, BSP flag.
    pub const APIC_BASE: ApicMsr = ApicMsr(0x1b);
    /// `IA32_TSC_DEADLINE` (0x6e0): the TSC value at which the LAPIC timer fires in
    /// TSC-deadline mode; 0 disarms.
    pub const TSC_DEADLINE: ApicMsr = ApicMsr(0x6e0);
    /// First x2APIC register MSR (SDM Vol. 3A §11.12.1.2 "x2APIC Register Address Space").
    pub(crate) const X2APIC_FIRST: u32 = 0x800;

    /// The x2APIC MSR at `index` (`0x800 + index`; `index` = xAPIC MMIO offset / 16).
    pub(crate) const fn x2apic(index: u8) -> ApicMsr {
        ApicMsr(Self::X2APIC_FIRST + index as u32)
    }

    /// The MSR number, for `rdmsr`/`wrmsr` (ECX).
    pub const fn number(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for ApicMsr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApicMsr({:#x})", self.0)
    }
}
