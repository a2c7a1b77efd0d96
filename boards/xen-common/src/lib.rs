//! # `rhea-board-xen-common` — what the Xen boards share
//!
//! Layer 5 (a board crate) but naming no machine: the facts of Xen's guest ABI that both
//! `xen-x86_64` and `xen-arm64` need, as plain data and logic, so that they are unit-tested on
//! the host:
//! - [`abi`]: hypercall and sub-operation numbers and the argument layouts used
//!   (`xen/include/public/*.h` of Xen 4.17, read to learn the interface; written here);
//! - [`shared`]: the shared-info page and `vcpu_info` as Rust types of atomics (Xen writes them
//!   concurrently with the guest), with the layouts checked at compile time;
//! - [`evtchn`]: event channels as an interrupt controller's bookkeeping — which port raises
//!   which vector on which vCPU, the 2-level pending/mask scan an upcall runs, and software
//!   vectors (IPIs, self-raises) carried by one IPI port per vCPU;
//! - [`lines`]: interrupt line numbers where event channels sit beside another controller
//!   (xen-arm64's GIC): ports as themselves, the other controller's lines above them;
//! - [`steal`]: steal time from each vCPU's runstate area (registered by the board);
//! - [`time`]: the Xen clock — a consistent snapshot of `vcpu_time_info` (version counter)
//!   and the TSC-to-nanoseconds scaling.
//!
//! On the machine only, [`pv`]: the paravirtual devices' glue both boards share — the PV
//! console ring as the console, console input, the grant table, xenstore, Xenbus with netfront
//! (`rhea_drivers::xen` has the protocols) — over the board's hypercalls ([`pv::Hypervisor`]).
//!
//! The demux and the shared page's atomics are model-checked with loom (`tests/loom.rs`, the
//! atomics swapped in through `sync`) against a simulated Xen.
//!
//! The boards make the hypercalls; nothing here touches hardware, so `unsafe` is denied
//! (except in `pv`, which wraps pages Xen shares as `SharedMem`).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

#[cfg(target_os = "none")]
extern crate alloc;

pub mod abi;
pub mod evtchn;
pub mod lines;
#[cfg(target_os = "none")]
pub mod pv;
pub mod shared;
pub mod steal;
mod sync;
pub mod time;
