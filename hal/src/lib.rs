//! # `rhea-hal` — layer 0: contracts between the layers
//!
//! This crate owns the traits and value types that the rest of Rhea agrees on. It contains no
//! hardware knowledge, no unsafe operation and no `cfg(target_arch)`: architectures and boards
//! implement these traits, the runtime consumes them. It depends on nothing.
//!
//! What lives here now:
//! - [`Arch`] (module [`arch`], with its [`arch::Fault`], [`arch::Registers`] and
//!   [`arch::AddressSpace`] and the [`arch::FrameSource`] paging draws on): the architecture
//!   contract, which each instruction set in `rhea-arch` implements;
//! - [`Board`] (with [`BootInfo`]) and its supertrait [`Platform`] with [`Console`]: the board
//!   contract — what every board gives the runtime, which uses a board only through it;
//! - [`KernelImage`] and [`memmap::MemoryMap`]: what a board reports about the image and RAM;
//! - [`ExitStatus`]: how a run ends;
//! - [`PhysAddr`] and [`CpuId`]: units carried in types;
//! - [`Instant`], [`Clock`] and [`OneShotTimer`]: time and the timer contract;
//! - [`IrqLine`] and [`Trigger`]: interrupt lines;
//! - [`Priority`]: thread priorities, with one documented direction;
//! - [`cmdline`]: the kernel command line, strictly checked (pure; boards and the runtime both
//!   read it, so it lives at the bottom).
#![no_std]
// Not `forbid`: the architecture contract declares three `unsafe fn`s (switching stacks and
// page tables), each allowed where it is declared. Nothing here performs an unsafe operation.
#![deny(unsafe_code)]

mod addr;
pub mod arch;
pub mod board;
pub mod cmdline;
pub mod image;
mod irq;
pub mod memmap;
mod platform;
mod priority;
mod time;

pub use addr::{CpuId, PAGE_SIZE, PhysAddr};
pub use arch::Arch;
pub use board::{Board, BootInfo};
pub use image::KernelImage;
pub use irq::{InterruptController, IrqLine, RouteError, Trigger};
pub use platform::{Console, ExitStatus, Platform, StackSource, TimeAndIrq};
pub use priority::{InvalidPriority, Priority};
pub use time::{Clock, Instant, OneShotTimer};
