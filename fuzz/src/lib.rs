//! # `rhea-fuzz` — the harnesses behind `cargo xtask fuzz`
//!
//! One module per fuzz target; each `fuzz_targets/<name>.rs` only hands libFuzzer's input to
//! `<module>::run`. The harnesses feed untrusted bytes to the parser as the kernel would get
//! them — a frame from the wire, a devicetree or PVH start info from the loader, ACPI tables
//! from firmware, replies and ring entries from another Xen domain, used-ring entries from a
//! virtio device — and the invariant is always the same: an error or a normal result, never a
//! panic, an arithmetic overflow (the fuzz profile keeps overflow checks on), an access outside
//! a buffer (AddressSanitizer), or a hang (libFuzzer's `-timeout`).
//!
//! Every crash found becomes a host unit test next to the parser it broke.

pub mod acpi;
pub mod cmdline;
pub mod cpio;
pub mod fat;
pub mod fdt;
pub mod http;
pub mod net_frame;
pub mod p9;
pub mod pvh;
pub mod rings;
pub mod uefi;
pub mod xen;
pub mod xenstore;

/// A cursor over the fuzz input that never fails: past the end it yields zeros, so every
/// input, however short, drives a whole scenario.
#[derive(Debug)]
pub struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    /// A cursor at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Input { bytes }
    }

    /// Whether every byte was taken.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Bytes not taken yet.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The next byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    /// The next little-endian `u16`.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// The next little-endian `u32`.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// The next little-endian `u64`.
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    /// Up to `n` next bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.bytes.split_at(n.min(self.bytes.len()));
        self.bytes = rest;
        head
    }

    /// Everything not taken yet.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.bytes.len())
    }
}
