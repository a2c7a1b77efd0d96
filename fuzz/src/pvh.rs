//! `pvh`: the PVH start info (`boards/qemu-x86_64/src/pvh.rs`) read from guest memory the
//! fuzzer fills, as the board's entry does: [`pvh::parse`], and [`pvh::parse_with`] with a
//! fallback e820 map as xen-x86_64's version-0 dom0 path does. The start info address, the
//! memory's base and the fallback map come from the input too, so pointers that wrap, land
//! past the end or straddle it are all tried. Invariant: an error, never a panic or overflow.
//!
//! Input: `[base selector, address mode, fallback count, address u64, fallback entries
//! (24 bytes each), memory...]`.

use crate::Input;
use rhea_board_common_x86::pvh::{self, E820Entry, PhysMemory};

/// Guest memory: `bytes` at physical address `base`; everything else is unreadable.
pub(crate) struct Memory<'a> {
    pub(crate) base: u64,
    pub(crate) bytes: &'a [u8],
}

impl PhysMemory for Memory<'_> {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
        // Physical addresses end at 2^64 - 1: a range past it does not exist.
        if paddr
            .checked_add(buf.len().saturating_sub(1) as u64)
            .is_none()
        {
            return false;
        }
        let Some(offset) = paddr.checked_sub(self.base) else {
            return false;
        };
        let Ok(offset) = usize::try_from(offset) else {
            return false;
        };
        match offset
            .checked_add(buf.len())
            .and_then(|end| self.bytes.get(offset..end))
        {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}

/// Bases worth trying: the legacy area (qboot), ordinary RAM, the top of the address space.
pub(crate) const BASES: [u64; 8] = [
    0,
    0x1000,
    0xf_0000,
    0x10_0000,
    0x7000_0000,
    0xffff_ffff_0000,
    u64::MAX - 0xffff,
    u64::MAX - 0x37,
];

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let base = BASES[usize::from(input.u8() % 8)];
    let mode = input.u8();
    let fallback_count = usize::from(input.u8() % 12);
    let raw_addr = input.u64();
    let fallback: Vec<E820Entry> = (0..fallback_count)
        .map(|_| E820Entry {
            addr: input.u64(),
            size: input.u64(),
            kind: input.u32(),
        })
        .collect();
    // Mostly an offset into the memory given (a pointer that reads something), sometimes any
    // 64-bit value.
    let addr = if mode & 1 == 0 {
        base.wrapping_add(raw_addr % 0x1_0000)
    } else {
        raw_addr
    };
    let mem = Memory {
        base,
        bytes: input.rest(),
    };
    let parsed = if mode & 2 == 0 || fallback.is_empty() {
        pvh::parse(&mem, addr)
    } else {
        pvh::parse_with(&mem, addr, Some(&fallback))
    };
    if let Ok(info) = parsed {
        let _ = info.cmdline();
        let _ = info.memory_map.usable().count();
        let _ = info.rsdp;
    }
}
