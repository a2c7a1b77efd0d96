//! # `rhea-timers` — layer 2: clocks and their calibration
//!
//! This crate owns the arithmetic of time and the procedures that find out how fast a hardware
//! counter runs. It never touches hardware itself: counters and I/O ports are reached through
//! the small traits below, which the kernel implements with `rhea-arch` primitives (`rdtsc`,
//! `in`/`out`). So it compiles for every target and is tested on the host against models of the
//! devices. No `unsafe`, no `cfg(target_arch)`, no allocation.
//!
//! May depend on: `rhea-hal` (for [`Instant`](rhea_hal::Instant) and
//! [`Clock`](rhea_hal::Clock)). Must not depend on: `rhea-irq` (which depends on this crate),
//! the scheduler, the runtime.
//!
//! Map:
//! - [`conversion`]: [`ClockConversion`], fixed-point ticks ⇄ nanoseconds (128-bit products,
//!   no overflow for the 584 years `u64` nanoseconds last), and the deadline rounding a
//!   one-shot timer needs;
//! - [`clock`]: the [`CycleCounter`] trait (a free-running counter such as the TSC),
//!   [`Timebase`] (origin + conversion) and [`TscClock`], a [`rhea_hal::Clock`];
//! - [`pit`]: the [`PortIo`] trait and the 8254 PIT used as a frequency reference (channel 2
//!   gated through port 0x61, channel 0 read back where port 0x61 is missing);
//! - [`calibrate`]: [`calibrate_tsc`] — CPUID-stated frequency first, else measured against
//!   the PIT, with a cross-check in ppm — and [`measure_rate`], which measures any counter
//!   (the LAPIC timer, in `rhea-irq`) against an already calibrated one.
//!
//! Hardware model assumed: one free-running, constant-rate counter per system (on x86 an
//! invariant TSC, synchronised across CPUs by firmware or the hypervisor); per-CPU skew is
//! absorbed by [`Timebase::instant_at`] saturating at the origin.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod calibrate;
pub mod clock;
pub mod conversion;
pub mod pit;

pub use calibrate::{
    Calibration, CalibrationConfig, CalibrationError, CrossCheck, FrequencySource, PitMeasurement,
    calibrate_tsc, measure_against_pit, measure_rate,
};
pub use clock::{CycleCounter, Timebase, TscClock};
pub use conversion::{ClockConversion, InvalidFrequency};
pub use pit::{PIT_HZ, PitChannel, PortIo};
