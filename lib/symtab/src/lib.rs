//! # `rhea-symtab` — the kernel's function names, for fault reports
//!
//! A fault report that says `rip 0x10234a` sends the reader to a disassembler; one that says
//! `rip 0x10234a <fault_panic::check_answer+0x1a>` does not. The linked image therefore carries
//! a table of its own function symbols. `cargo xtask build` links once, extracts the symbols,
//! writes the table and links again; the table lives in the `.rhea_symtab` section, which the
//! board's linker script places after `.data`, so embedding it moves no function. xtask checks
//! the fixed point.
//!
//! Format (little-endian), written by `xtask/src/build/symtab.rs`:
//! ```text
//! "RSY2" | count: u32 | base: u64 | names_len: u32 | tokens: u32
//!        | count × { start: u32, extent: u32 } sorted by start; start is relative to base,
//!          extent is name_off << 14 | size, a size of 0x3fff (LONG) meaning "up to the next
//!          function's start" (the last function: at most LONG bytes)
//!        | names (names_len bytes): each [n: u8][n token references], a reference one byte
//!          (0..0x80) or two (0x80 | index >> 8, index & 0xff); name_off is relative to the
//!          start of the names, equal names are stored once
//!        | tokens: [len: u8][len bytes UTF-8] × tokens, in index order
//! ```
//! A token is a run of identifier characters followed by a run of other characters
//! (`rhea_sched::`, `<`, `T,`): names share their path segments. Everything is bounds-checked:
//! a missing or corrupt table makes lookups return `None`, never read out of bounds. No
//! `unsafe` (beyond naming the section), no allocation: usable from a fault handler.
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

const MAGIC: &[u8; 4] = b"RSY2";
const HEADER: usize = 24;
const ENTRY: usize = 8;
/// The size field's width, and its value for "up to the next function".
const SIZE_BITS: u32 = 14;
const LONG: u32 = (1 << SIZE_BITS) - 1;

/// A symbolised address: the function and the offset into it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Symbol<'a> {
    /// Demangled name, without the hash.
    pub name: Name<'a>,
    /// `addr - start of the function`.
    pub offset: u64,
}

/// A function's name as the table stores it (token references); [`Display`](core::fmt::Display)
/// writes it out. Only made by a lookup, which checked every reference.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Name<'a> {
    refs: &'a [u8],
    tokens: &'a [u8],
    count: usize,
}

impl<'a> Name<'a> {
    /// The tokens, in order (`None` for a reference that does not resolve).
    fn parts(self) -> impl Iterator<Item = Option<&'a str>> {
        let mut refs = self.refs;
        core::iter::from_fn(move || {
            let (&first, rest) = refs.split_first()?;
            let index = if first < 0x80 {
                refs = rest;
                usize::from(first)
            } else {
                let (&second, rest) = rest.split_first()?;
                refs = rest;
                usize::from(first & 0x7f) << 8 | usize::from(second)
            };
            Some(token(self.tokens, self.count, index))
        })
    }

    /// Checks that every reference resolves (the references themselves are whole: see
    /// `Table::name`).
    fn check(self) -> Option<Self> {
        self.parts().all(|p| p.is_some()).then_some(self)
    }
}

impl core::fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for part in self.parts() {
            f.write_str(part.unwrap_or("?"))?;
        }
        Ok(())
    }
}

/// Token `index` of the `count` tokens in `tokens` (a linear walk: only fault reports look).
fn token(tokens: &[u8], count: usize, index: usize) -> Option<&str> {
    if index >= count {
        return None;
    }
    let mut at = 0usize;
    for _ in 0..index {
        at = at.checked_add(1 + usize::from(*tokens.get(at)?))?;
    }
    let len = usize::from(*tokens.get(at)?);
    core::str::from_utf8(tokens.get(at + 1..at + 1 + len)?).ok()
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
    let i = lo.checked_sub(1)?;
    let (start, size, name_off) = t.entry(i)?;
    let offset = addr - start;
    let extent = match size {
        LONG if i + 1 < t.count => t.entry(i + 1)?.0 - start,
        size => u64::from(size.max(1)),
    };
    if offset >= extent {
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
    base: u64,
    /// The names' bytes.
    names: &'a [u8],
    /// The tokens' bytes and how many there are.
    tokens: &'a [u8],
    token_count: usize,
}

impl<'a> Table<'a> {
    fn parse(bytes: &'a [u8]) -> Option<Self> {
        if bytes.get(..4)? != MAGIC {
            return None;
        }
        let u32_at = |at: usize| -> Option<usize> {
            Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize)
        };
        let count = u32_at(4)?;
        let base = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
        let names_len = u32_at(16)?;
        let token_count = u32_at(20)?;
        let names_at = count.checked_mul(ENTRY)?.checked_add(HEADER)?;
        let tokens_at = names_at.checked_add(names_len)?;
        Some(Self {
            bytes,
            count,
            base,
            names: bytes.get(names_at..tokens_at)?,
            tokens: bytes.get(tokens_at..)?,
            token_count,
        })
    }

    fn entry(&self, i: usize) -> Option<(u64, u32, u32)> {
        let at = HEADER + i * ENTRY;
        let e = self.bytes.get(at..at + ENTRY)?;
        let word = |k: usize| u32::from_le_bytes([e[k], e[k + 1], e[k + 2], e[k + 3]]);
        let extent = word(4);
        Some((
            self.base.checked_add(u64::from(word(0)))?,
            extent & LONG,
            extent >> SIZE_BITS,
        ))
    }

    fn name(&self, off: u32) -> Option<Name<'a>> {
        let at = off as usize;
        let n = usize::from(*self.names.get(at)?);
        // At most two bytes per reference; the exact length is found by walking them.
        let avail = self.names.get(at + 1..)?;
        let mut len = 0;
        for _ in 0..n {
            len += if *avail.get(len)? < 0x80 { 1 } else { 2 };
        }
        Name {
            refs: avail.get(..len)?,
            tokens: self.tokens,
            count: self.token_count,
        }
        .check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits a name into tokens: identifier characters, then the others.
    fn tokenize(name: &str) -> Vec<&str> {
        let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let mut out = Vec::new();
        let mut rest = name;
        while !rest.is_empty() {
            let a = rest.find(|c| !ident(c)).unwrap_or(rest.len());
            let b = rest[a..].find(ident).map_or(rest.len(), |i| a + i);
            out.push(&rest[..b]);
            rest = &rest[b..];
        }
        out
    }

    /// A table in the documented format (tokens in first-seen order, names not shared).
    fn table(entries: &[(u64, u32, &str)]) -> Vec<u8> {
        let base = entries.iter().map(|e| e.0).min().unwrap_or(0);
        let mut tokens: Vec<&str> = Vec::new();
        let mut names = Vec::new();
        let mut body = Vec::new();
        for &(start, size, name) in entries {
            body.extend_from_slice(&((start - base) as u32).to_le_bytes());
            let extent = (names.len() as u32) << SIZE_BITS | size.min(LONG);
            body.extend_from_slice(&extent.to_le_bytes());
            let parts = tokenize(name);
            names.push(parts.len() as u8);
            for p in parts {
                let i = tokens.iter().position(|t| *t == p).unwrap_or_else(|| {
                    tokens.push(p);
                    tokens.len() - 1
                });
                if i < 0x80 {
                    names.push(i as u8);
                } else {
                    names.extend_from_slice(&[0x80 | (i >> 8) as u8, i as u8]);
                }
            }
        }
        let mut out = Vec::from(*MAGIC);
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&base.to_le_bytes());
        out.extend_from_slice(&(names.len() as u32).to_le_bytes());
        out.extend_from_slice(&(tokens.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&names);
        for t in tokens {
            out.push(t.len() as u8);
            out.extend_from_slice(t.as_bytes());
        }
        out
    }

    fn found(t: &[u8], addr: u64) -> Option<(String, u64)> {
        lookup_in(t, addr).map(|s| (s.name.to_string(), s.offset))
    }

    #[test]
    fn finds_function_and_offset() {
        let t = table(&[
            (0x20_1000, 0x20, "a::f"),
            (0x20_1020, 0x10, "<a::S as b::T>::g"),
            (0x20_2000, 0x100, "b::h"),
        ]);
        assert_eq!(found(&t, 0x20_1000), Some(("a::f".into(), 0)));
        assert_eq!(
            found(&t, 0x20_102f),
            Some(("<a::S as b::T>::g".into(), 0xf))
        );
        assert_eq!(found(&t, 0x20_20ff), Some(("b::h".into(), 0xff)));
        assert_eq!(found(&t, 0x20_1030), None, "gap between functions");
        assert_eq!(found(&t, 0x20_0fff), None, "before the first");
        assert_eq!(found(&t, 0x20_2100), None, "after the last");
    }

    #[test]
    fn long_functions_extend_to_the_next() {
        let t = table(&[
            (0x10_0000, 0x6000, "big"),
            (0x10_6010, 0x10, "small"),
            (0x11_0000, 0x5000, "last_big"),
        ]);
        assert_eq!(found(&t, 0x10_5fff), Some(("big".into(), 0x5fff)));
        assert_eq!(
            found(&t, 0x10_600f),
            Some(("big".into(), 0x600f)),
            "padding: the previous"
        );
        assert_eq!(found(&t, 0x10_6010), Some(("small".into(), 0)));
        assert_eq!(found(&t, 0x11_3ffe), Some(("last_big".into(), 0x3ffe)));
        assert_eq!(found(&t, 0x11_3fff), None, "the last: at most LONG bytes");
    }

    #[test]
    fn two_byte_token_references() {
        // 200 distinct tokens: the later ones need two-byte references.
        let names: Vec<String> = (0..200).map(|i| format!("m{i}::f{i}")).collect();
        let entries: Vec<(u64, u32, &str)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (0x1000 + 16 * i as u64, 16, n.as_str()))
            .collect();
        let t = table(&entries);
        for (i, n) in names.iter().enumerate() {
            assert_eq!(found(&t, 0x1000 + 16 * i as u64 + 3), Some((n.clone(), 3)));
        }
    }

    #[test]
    fn corrupt_tables_give_none_never_a_panic() {
        let good = table(&[(0x1000, 0x20, "a::f"), (0x2000, 0x20, "b::g")]);
        assert!(found(&good, 0x1000).is_some());
        assert_eq!(found(&[], 0x1000), None);
        let mut magic = good.clone();
        magic[3] = b'M';
        assert_eq!(found(&magic, 0x1000), None);
        // Claimed count larger than the bytes.
        let mut big = good.clone();
        big[4..8].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(found(&big, 0x1000), None);
        // A base that overflows with the start added.
        let mut base = good.clone();
        base[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(found(&base, 0x1000), None);
        // Names longer than the bytes.
        let mut names_len = good.clone();
        names_len[16..20].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert_eq!(found(&names_len, 0x1000), None);
        // A name offset pointing past the names.
        let names_at = HEADER + 2 * ENTRY;
        let mut bad_off = good.clone();
        bad_off[HEADER + 4..HEADER + 8].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert_eq!(found(&bad_off, 0x1000), None);
        // A reference to a token that does not exist, and more references than bytes.
        let mut bad_ref = good.clone();
        bad_ref[names_at + 1] = 0x7f;
        assert_eq!(found(&bad_ref, 0x1000), None);
        let mut bad_two = good.clone();
        bad_two[names_at + 1] = 0xff;
        assert_eq!(found(&bad_two, 0x1000), None);
        let mut many = good.clone();
        many[names_at] = 200;
        assert_eq!(found(&many, 0x1000), None);
        // Fewer tokens than referenced.
        let mut few = good.clone();
        few[20..24].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(found(&few, 0x2000), None);
        // Every truncation of a good table is handled.
        for cut in 0..good.len() {
            let _ = found(&good[..cut], 0x2010);
        }
        // Invalid UTF-8 in a token.
        let mut bad_utf8 = good.clone();
        let last = bad_utf8.len() - 1;
        bad_utf8[last] = 0xff;
        assert_eq!(found(&bad_utf8, 0x2000), None);
    }
}
