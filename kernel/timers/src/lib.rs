//! # `rhea-timers` — layer 2: the arithmetic of time
//!
//! Hardware-free: fixed-point conversion between counter ticks and nanoseconds, and a clock
//! over any free-running counter. The counters themselves, and the procedures that find out how
//! fast they run (the x86 TSC measured against the 8254 PIT, the LAPIC timer against the TSC),
//! are hardware and live with the platforms (`rhea-board-common-x86`, `rhea-board-common-arm`).
//! No `unsafe`, no `cfg(target_arch)`, no allocation; host-tested.
//!
//! May depend on: `rhea-hal` (for [`Instant`](rhea_hal::Instant) and
//! [`Clock`](rhea_hal::Clock)). Must not depend on: the scheduler, the runtime, any board.
//!
//! Map:
//! - [`conversion`]: [`ClockConversion`], fixed-point ticks ⇄ nanoseconds (128-bit products,
//!   no overflow for the 584 years `u64` nanoseconds last), and the deadline rounding a
//!   one-shot timer needs;
//! - [`clock`]: the [`CycleCounter`] trait (a free-running counter such as the TSC),
//!   [`Timebase`] (origin + conversion) and [`TscClock`], a [`rhea_hal::Clock`].
//!
//! Hardware model assumed: one free-running, constant-rate counter per system (on x86 an
//! invariant TSC, synchronised across CPUs by firmware or the hypervisor); per-CPU skew is
//! absorbed by [`Timebase::instant_at`] saturating at the origin.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod clock;
pub mod conversion;

pub use clock::{CycleCounter, Timebase, TscClock};
pub use conversion::{ClockConversion, InvalidFrequency};
