//! # `rhea-board-common-x86` — what the x86 PC boards share
//!
//! Layer 4, like every board crate, but naming no particular machine: the x86 counterpart of
//! `rhea-board-common-arm`. The boards (`qemu-x86_64`, `xen-x86_64`) take from it what their
//! machine has, and keep only their own facts (exit path, address windows, hypervisor calls).
//!
//! Hardware-free and host-tested (register and firmware models, corrupt tables):
//! - [`access`]: the register-access traits the controllers are written against
//!   ([`Mmio32`], [`Msr`], [`pit::PortIo`]), implemented on the machine with `rhea-arch`;
//! - [`lapic`]: [`Lapic`] over [`XApic`] or [`X2Apic`] — enable, EOI, IDs, LVTs, IPIs;
//!   [`lapic_timer`]: [`LapicTimer`], the per-CPU one-shot timer (TSC-deadline or one-shot)
//!   and its calibration against the TSC;
//! - [`ioapic`]: [`IoApic`] routing, masking, and ISA IRQ → GSI overrides; [`pic8259`]:
//!   remapping and masking the legacy PIC;
//! - the TSC's frequency references: [`hpet`] (the ACPI HPET table and the HPET's counter),
//!   [`pm_timer`] (the FADT's ACPI PM timer), [`pit`] (the 8254 PIT); [`calibrate`]: the
//!   TSC's frequency from CPUID, else measured against the HPET, the PM timer or the PIT (the
//!   first that works, or the one `rhea.tsc_ref` forces; none is a clear error), with a
//!   cross-check against the best other source, and [`calibrate::measure_rate`] for any
//!   counter against a calibrated one;
//! - [`madt`], [`mcfg`]: the ACPI MADT (CPUs, I/O APICs, ISA overrides) through the `acpi`
//!   crate with the entry walk validated first, and the MCFG (PCI Express ECAM windows) by our
//!   own parser; the HPET table and the FADT are likewise found by the crate and parsed by
//!   ours;
//! - [`pvh`]: the PVH `hvm_start_info` parser with its validation;
//! - [`kvm`]: KVM's paravirtual time — kvmclock (the TSC frequency without calibration) and
//!   steal time — its CPUID bits and MSR values (the records and their registration on the
//!   machine).
//!
//! On the machine (`x86_64`, bare metal):
//! - the PVH boot protocol: the ELF note and the 32-bit entry that reaches long mode, early
//!   boot shared by every PVH board ([`pvh_boot`], [`BootInfo`]), and the linker script
//!   (`link.ld`, which xtask passes for every x86 board);
//! - the COM1 console (a 16550 at port 0x3f8, receive interrupt on ISA IRQ 4);
//! - interrupts and time (`interrupts`): PIC, LAPIC, I/O APIC, the TSC (its references found
//!   in the ACPI tables in early boot, the HPET mapped when needed) and LAPIC timer;
//! - PCI configuration access (ECAM from the MCFG, else ports 0xcf8/0xcfc);
//! - application processors: the real-mode trampoline, INIT-SIPI-SIPI, per-CPU stacks.
//!
//! May depend on: `rhea-hal`, `rhea-mm`, `rhea-pvtime` (the kvmclock and steal records), `rhea-irq` (the vector plan), `rhea-timers`,
//! `rhea-smp` (the CPU table), `acpi` (everywhere); `rhea-arch`, `rhea-drivers`, `rhea-sync`,
//! `x86_64` (on the machine). Not on the runtime, which links the board, nor on another board.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

#[cfg(target_os = "none")]
extern crate alloc;

pub mod access;
pub mod calibrate;
pub mod hpet;
pub mod ioapic;
pub mod kvm;
pub mod lapic;
pub mod lapic_timer;
pub mod madt;
pub mod mcfg;
#[cfg(test)]
mod model;
pub mod pic8259;
pub mod pit;
pub mod pm_timer;
pub mod pvh;
pub mod uefi;

pub use access::{ApicMsr, Mmio32, Msr};
pub use ioapic::{IoApic, IoApicError, IsaIrqMap, IsaOverride};
pub use lapic::{
    ApicBase, ApicId, Lapic, LapicAccess, LapicConfig, LapicError, LapicMode, TimerDivide, X2Apic,
    XApic,
};
pub use lapic_timer::{LapicTimer, LapicTimerMode, LapicTimerRate, calibrate_lapic_timer};
pub use pit::PortIo;

#[cfg(target_os = "none")]
pub mod devices;
#[cfg(target_os = "none")]
pub mod interrupts;
#[cfg(target_os = "none")]
mod machine;
#[cfg(target_os = "none")]
pub mod pci;
#[cfg(target_os = "none")]
pub mod smp;
#[cfg(target_os = "none")]
pub use machine::*;
#[cfg(target_os = "none")]
pub use smp::ap_stacks;
