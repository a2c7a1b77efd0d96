//! # `rhea-mm` — layer 1: physical memory and the kernel heap
//!
//! Owns the hardware-free half of memory management:
//! - [`MemoryMap`]: a fixed-capacity, sorted, validated list of physical regions, built from
//!   whatever the board's boot protocol reports (PVH start info, device tree, UEFI) — every
//!   region checked for zero length, wrap-around, absurd addresses and overlap;
//! - [`FrameAllocator`]: a bitmap allocator of 4 KiB physical frames, with contiguous runs for
//!   page tables, stacks, the heap and (later) DMA;
//! - [`Heap`]: the `#[global_allocator]` the runtime installs, over a region handed to it once:
//!   TLSF (`rlsf`), O(1) allocation and free, bounds stated in [`heap`];
//! - [`pool::RawPool`]: the lock-free, interrupt-safe core of the fixed-block memory pool apps
//!   get as `rhea::sync::BlockPool` (its storage comes from the heap, once), model-checked
//!   with `loom` (`tests/loom.rs`, atomics from `src/sync.rs`).
//!
//! Page tables are the other half and live with the architecture (`rhea-arch`), because their
//! format is hardware. This crate has no `unsafe` except in [`heap`] and [`pool`], where handing
//! out raw memory is inherently unsafe, and it is unit-tested on the host.
//!
//! Why a hand-written frame allocator: the crates we looked at (`bitmap-allocator`,
//! `buddy_system_allocator`) either allocate their metadata on a heap that does not exist yet
//! at this stage or cannot express "these frames are reserved" after construction; ours takes
//! its bitmap storage from the memory map it manages, which is 150 lines.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

mod frames;
pub mod heap;
pub mod pool;
mod sync;

pub use frames::{FrameAllocator, FrameError};
pub use heap::Heap;
pub use rhea_hal::memmap::{
    MAX_PHYS_ADDR, MAX_REGIONS, MemoryMap, MemoryMapError, Region, RegionKind,
};
