//! # `rhea-hal` — layer 0: contracts between the layers
//!
//! This crate owns the traits and value types that the rest of Rhea agrees on. It contains no
//! hardware knowledge, no `unsafe` and no `cfg(target_arch)`: boards implement these traits,
//! the runtime consumes them. It depends on nothing.
//!
//! What lives here now:
//! - [`Console`] and [`Platform`]: what a board must give the runtime to print and to end the
//!   machine;
//! - [`ExitStatus`]: how a run ends;
//! - [`PhysAddr`] and [`CpuId`]: units carried in types;
//! - [`Instant`], [`Clock`] and [`OneShotTimer`]: time and the timer contract;
//! - [`IrqLine`] and [`Trigger`]: interrupt lines;
//! - [`Priority`]: thread priorities, with one documented direction;
//! - [`cmdline`]: the kernel command line, strictly checked (pure; boards and the runtime both
//!   read it, so it lives at the bottom).
#![no_std]
#![forbid(unsafe_code)]

mod addr;
pub mod cmdline;
mod irq;
mod platform;
mod priority;
mod time;

pub use addr::{CpuId, PAGE_SIZE, PhysAddr};
pub use irq::{InterruptController, IrqLine, RouteError, Trigger};
pub use platform::{Console, ExitStatus, Platform, StackSource, TimeAndIrq};
pub use priority::{InvalidPriority, Priority};
pub use time::{Clock, Instant, OneShotTimer};
