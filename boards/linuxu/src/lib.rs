//! # `rhea-board-linuxu` — Rhea as a Linux process
//!
//! Layer 5 for the LinuxU "machine": the same kernel crates and apps as on QEMU, built for
//! `x86_64-unknown-linux-gnu`, running as an ordinary process without privileges.
//!
//! - **Boot**: libc's start-up calls [`main`], which records the arguments (the kernel command
//!   line: every argument after the program name) and enters the kernel (`rhea_entry`).
//! - **Memory**: one anonymous mapping at a fixed address is the machine's RAM
//!   (`rhea.mem_mib=N`, default 64), so "physical" addresses equal virtual ones as on the
//!   identity-mapped boards; kernel stacks are separate mappings with unmapped guards.
//! - **Console**: standard output (`write(1)`); input is standard input, whose readiness raises
//!   `SIGIO` (`O_ASYNC`, `F_SETSIG`, owned by the vCPU thread) — a device interrupt like any
//!   other, through the same IRQ registry.
//! - **Time**: `CLOCK_MONOTONIC` is the clock; a POSIX timer per vCPU (`timer_create` with
//!   `SIGEV_THREAD_ID`, armed one-shot with an absolute deadline) is the timer interrupt.
//! - **Exit**: `exit_group` with 0 (success) or 1 (failure).
//!
//! - **Simulation** (`rhea.sim=1 rhea.seed=N`, see [`sim`]): virtual time, deterministic
//!   scheduling, no timer signals.
//!
//! Everything goes through raw system calls (`rhea_arch::sys`); see there why not libc.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

mod devices;
mod hostfs;
mod machine;
mod sim;
mod smp;
mod tap;
pub use machine::*;
