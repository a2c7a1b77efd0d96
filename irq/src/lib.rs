//! # `rhea-irq` — layer 2: interrupts
//!
//! This crate owns what happens between a device raising a line and a handler running: the
//! vector plan, the registry that maps vectors to handlers (fast handlers and threaded ones
//! whose thread the scheduler wakes), and the x86 interrupt controllers — the local APIC in
//! xAPIC and x2APIC mode with its timer, the I/O APIC, and the legacy 8259 pair, which is only
//! put out of the way.
//!
//! It never touches hardware itself. Controllers reach their registers through the traits in
//! [`access`] ([`Mmio32`], [`Msr`]) and [`PortIo`] (from `rhea-timers`), which the kernel
//! implements with `rhea-arch` primitives; so the crate compiles for every target, has no
//! `unsafe` and no `cfg(target_arch)`, and is tested on the host against register models. It
//! allocates nothing.
//!
//! May depend on: `rhea-hal` (contracts: [`OneShotTimer`](rhea_hal::OneShotTimer),
//! [`IrqLine`](rhea_hal::IrqLine), [`Trigger`](rhea_hal::Trigger)), `rhea-timers` (tick
//! conversion, the TSC timebase, calibration, `PortIo`), `spin` (`Once`). Must not depend on:
//! the scheduler (it registers an [`IrqThreadWaker`] instead), the runtime, `rhea-arch`.
//!
//! Map:
//! - [`vectors`]: the vector plan and [`Vector`];
//! - [`registry`]: [`IrqRegistry`] — registration at any time, lock-free O(1) dispatch,
//!   per-vector statistics, the reschedule signal; model-checked with loom (`tests/loom.rs`),
//!   its atomics and `Once` taken from `sync`;
//! - [`access`]: register-access traits the kernel implements;
//! - [`lapic`]: [`Lapic`] over [`XApic`] or [`X2Apic`] — enable, EOI, IDs, LVTs, IPIs;
//! - [`lapic_timer`]: [`LapicTimer`], the per-CPU [`OneShotTimer`](rhea_hal::OneShotTimer)
//!   (TSC-deadline or one-shot), and the LAPIC timer's calibration against the TSC;
//! - [`ioapic`]: [`IoApic`] routing, masking, and ISA IRQ → GSI overrides;
//! - [`pic8259`]: remapping and masking the legacy PIC.
//!
//! Hardware model assumed: x86 with a LAPIC per CPU; IOAPICs for external lines; interrupt
//! gates that clear IF, handlers that never set it — interrupts do not nest.
#![cfg_attr(not(test), no_std)]
// Under `--cfg loom` only, `sync` holds a model-only `Once` that needs `unsafe` (allowed there);
// every real build forbids it.
#![cfg_attr(not(loom), forbid(unsafe_code))]
#![cfg_attr(loom, deny(unsafe_code))]

pub mod access;
pub mod ioapic;
pub mod lapic;
pub mod lapic_timer;
pub mod pic8259;
pub mod registry;
mod sync;
pub mod vectors;

pub use access::{ApicMsr, Mmio32, Msr};
pub use ioapic::{IoApic, IoApicError, IsaIrqMap, IsaOverride};
pub use lapic::{
    ApicBase, ApicId, Lapic, LapicAccess, LapicConfig, LapicError, LapicMode, TimerDivide, X2Apic,
    XApic,
};
pub use lapic_timer::{LapicTimer, LapicTimerMode, LapicTimerRate, calibrate_lapic_timer};
pub use registry::{
    Dispatch, IrqHandler, IrqRegistry, IrqThreadWaker, RegistryError, Reschedule, TopHalf,
};
pub use rhea_timers::PortIo;
pub use vectors::Vector;
