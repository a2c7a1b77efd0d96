//! # `rhea-mm` — layer 1: physical memory and the kernel heap
//!
//! Owns the hardware-free half of memory management:
//! - [`MemoryMap`]: a fixed-capacity, sorted, validated list of physical regions, built from
//!   whatever the board's boot protocol reports (PVH start info, device tree, UEFI) — every
//!   region checked for zero length, wrap-around, absurd addresses and overlap;
//! - [`FrameAllocator`]: a bitmap allocator of 4 KiB physical frames, with contiguous runs for
//!   page tables, stacks, the heap and (later) DMA;
//! - [`Heap`]: the `#[global_allocator]` the runtime installs, over a region handed to it once.
//!
//! Page tables are the other half and live with the architecture (`rhea-arch`), because their
//! format is hardware. This crate has no `unsafe` except in [`heap`], where handing raw memory
//! to the allocator is inherently unsafe, and it is unit-tested on the host.
//!
//! Why a hand-written frame allocator: the crates we looked at (`bitmap-allocator`,
//! `buddy_system_allocator`) either allocate their metadata on a heap that does not exist yet
//! at this stage or cannot express "these frames are reserved" after construction; ours takes
//! its bitmap storage from the memory map it manages, which is 150 lines.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

mod frames;
pub mod heap;
mod memmap;

pub use frames::{FrameAllocator, FrameError};
pub use heap::Heap;
pub use memmap::{MAX_PHYS_ADDR, MAX_REGIONS, MemoryMap, MemoryMapError, Region, RegionKind};
