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
//! - [`PhysAddr`] and [`CpuId`]: units carried in types.
//!
//! Interrupt controllers, clocks and one-shot timers join this crate with the scheduler issue.
#![no_std]
#![forbid(unsafe_code)]

mod addr;
mod platform;

pub use addr::{CpuId, PAGE_SIZE, PhysAddr};
pub use platform::{Console, ExitStatus, Platform};
