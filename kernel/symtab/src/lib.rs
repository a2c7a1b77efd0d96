//! # `rhea-symtab` — the kernel's function names, for fault reports
//!
//! A fault report that says `rip 0x10234a` sends the reader to a disassembler; one that says
//! `rip 0x10234a <fault_panic::check_answer+0x1a>` does not. The linked image therefore carries
//! a table of its own function symbols. `cargo xtask build` links once, extracts the symbols,
//! writes the table and links again; the table lives in the `.rhea_symtab` section, which the
//! board's linker script places after `.data`, so embedding it moves no function. xtask checks
//! the fixed point.
//!
//! Format (little-endian), written by `xtask/src/symtab.rs`:
//! ```text
//! "RSYM" | count: u32 | count × { start: u64, size: u32, name_off: u32 } sorted by start
//!        | names: [len: u8][len bytes UTF-8] ..., name_off relative to the end of the entries
//! ```
//! Everything is bounds-checked: a missing or corrupt table makes lookups return `None`, never
//! read out of bounds. No `unsafe` (beyond naming the section), no allocation: usable from a fault handler.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

/// The table bytes, in their own section so the linker script can place them last.
#[allow(
    unsafe_code,
    reason = "`link_section` only names the section; the bytes are plain data"
)]
#[unsafe(link_section = ".rhea_symtab")]
#[used]
static TABLE: [u8; include_bytes!(concat!(env!("OUT_DIR"), "/symtab.bin")).len()] =
    *include_bytes!(concat!(env!("OUT_DIR"), "/symtab.bin"));

const MAGIC: &[u8; 4] = b"RSYM";
const HEADER: usize = 8;
const ENTRY: usize = 16;

/// A symbolised address: the function and the offset into it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Symbol<'a> {
    /// Demangled name, without the hash.
    pub name: &'a str,
    /// `addr - start of the function`.
    pub offset: u64,
}

/// Looks `addr` up in the table embedded in this image.
pub fn lookup(addr: u64) -> Option<Symbol<'static>> {
    lookup_in(table(), addr)
}

/// The embedded table, hidden from the optimiser: were its (possibly empty) contents visible,
/// the first link would drop the lookup code, the second would keep it, and functions would
/// move between the two, costing xtask an extra link to reach its fixed point.
fn table() -> &'static [u8] {
    core::hint::black_box(&TABLE[..])
}

/// Number of symbols in the embedded table (0 when the image was built without one).
pub fn len() -> usize {
    Table::parse(table()).map_or(0, |t| t.count)
}

/// Whether the embedded table is empty.
pub fn is_empty() -> bool {
    len() == 0
}

/// Looks `addr` up in an arbitrary table (the host tests feed corrupt ones).
pub fn lookup_in(table: &[u8], addr: u64) -> Option<Symbol<'_>> {
    let t = Table::parse(table)?;
    // Binary search for the last entry with start <= addr.
    let (mut lo, mut hi) = (0usize, t.count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if t.entry(mid)?.0 <= addr {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let (start, size, name_off) = t.entry(lo.checked_sub(1)?)?;
    let offset = addr - start;
    if offset >= u64::from(size.max(1)) {
        return None;
    }
    Some(Symbol {
        name: t.name(name_off)?,
        offset,
    })
}

struct Table<'a> {
    bytes: &'a [u8],
    count: usize,
    names: usize,
}

impl<'a> Table<'a> {
    fn parse(bytes: &'a [u8]) -> Option<Self> {
        if bytes.get(..4)? != MAGIC {
            return None;
        }
        let count = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?) as usize;
        let names = count.checked_mul(ENTRY)?.checked_add(HEADER)?;
        if names > bytes.len() {
            return None;
        }
        Some(Self {
            bytes,
            count,
            names,
        })
    }

    fn entry(&self, i: usize) -> Option<(u64, u32, u32)> {
        let at = HEADER + i * ENTRY;
        let e = self.bytes.get(at..at + ENTRY)?;
        Some((
            u64::from_le_bytes(e[0..8].try_into().ok()?),
            u32::from_le_bytes(e[8..12].try_into().ok()?),
            u32::from_le_bytes(e[12..16].try_into().ok()?),
        ))
    }

    fn name(&self, off: u32) -> Option<&'a str> {
        let at = self.names.checked_add(off as usize)?;
        let len = *self.bytes.get(at)? as usize;
        core::str::from_utf8(self.bytes.get(at + 1..at + 1 + len)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(u64, u32, &str)]) -> Vec<u8> {
        let mut names = Vec::new();
        let mut out = Vec::from(*MAGIC);
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for &(start, size, name) in entries {
            out.extend_from_slice(&start.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&(names.len() as u32).to_le_bytes());
            names.push(name.len() as u8);
            names.extend_from_slice(name.as_bytes());
        }
        out.extend_from_slice(&names);
        out
    }

    #[test]
    fn finds_function_and_offset() {
        let t = table(&[
            (0x1000, 0x20, "a::f"),
            (0x1020, 0x10, "a::g"),
            (0x2000, 0x100, "b::h"),
        ]);
        assert_eq!(
            lookup_in(&t, 0x1000),
            Some(Symbol {
                name: "a::f",
                offset: 0
            })
        );
        assert_eq!(
            lookup_in(&t, 0x102f),
            Some(Symbol {
                name: "a::g",
                offset: 0xf
            })
        );
        assert_eq!(
            lookup_in(&t, 0x20ff),
            Some(Symbol {
                name: "b::h",
                offset: 0xff
            })
        );
        assert_eq!(lookup_in(&t, 0x1030), None, "gap between functions");
        assert_eq!(lookup_in(&t, 0xfff), None, "before the first");
        assert_eq!(lookup_in(&t, 0x2100), None, "after the last");
    }

    #[test]
    fn corrupt_tables_give_none_never_a_panic() {
        let good = table(&[(0x1000, 0x20, "a::f"), (0x2000, 0x20, "b::g")]);
        assert_eq!(lookup_in(&[], 0x1000), None);
        assert_eq!(lookup_in(b"XSYM\x01\0\0\0", 0x1000), None);
        // Claimed count larger than the bytes.
        let mut big = good.clone();
        big[4..8].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(lookup_in(&big, 0x1000), None);
        // A name offset pointing past the end, and a name length past the end.
        let mut bad_off = good.clone();
        bad_off[8 + 12..8 + 16].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert_eq!(lookup_in(&bad_off, 0x1000), None);
        let mut bad_len = good.clone();
        let names = 8 + 2 * 16;
        bad_len[names] = 200;
        assert_eq!(lookup_in(&bad_len, 0x1000), None);
        // Every truncation of a good table is handled.
        for cut in 0..good.len() {
            let _ = lookup_in(&good[..cut], 0x2010);
        }
        // Invalid UTF-8 in a name.
        let mut bad_utf8 = good.clone();
        bad_utf8[names + 1] = 0xff;
        assert_eq!(lookup_in(&bad_utf8, 0x1000), None);
    }
}
