//! Event tracing's hardware-free half: the record format ([`event`]), one CPU's lock-free
//! trace buffer with its modes ([`buf`]), and the framed, checksummed text dump with its parser
//! ([`frame`]). The kernel (`runtime/src/trace.rs`) owns the per-CPU buffers, the clock and the
//! control; `cargo xtask trace` reads dumps with [`frame::parse`] and writes Perfetto traces.
//!
//! Hand-written rather than a crate: the format must fit a fixed-size, allocation-free,
//! interrupt-safe event path (no crate offers a lock-free per-CPU recorder for `no_std`), and
//! the dump's framing (base64, CRC-32) is a few dozen lines, cheaper than two dependencies.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod buf;
pub mod event;
pub mod frame;
mod sync;

pub use buf::{Counts, CpuBuf, Mode};
pub use event::{
    ALL, CATEGORIES, CATEGORY_NAMES, Category, CategoryError, DropWhy, IpiKind, Kind, LeftAs,
    NO_THREAD, ObjKind, PrioWhy, RECORD_BYTES, Record, WakeWhy, name_records, parse_categories,
};

#[cfg(all(test, not(loom)))]
mod tests;
