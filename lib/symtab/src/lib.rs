//! # `rhea-symtab` — the kernel's function names, for fault reports
//!
//! A fault report that says `rip 0x10234a` sends the reader to a disassembler; one that says
//! `rip 0x10234a <fault_panic::check_answer+0x1a>` does not. The linked image therefore carries
//! a table of its own function symbols. `cargo xtask build` links once, extracts the symbols,
//! writes the table and links again; the table lives in the `.rhea_symtab` section, which the
//! board's linker script places after `.data`, so embedding it moves no function. xtask checks
//! the fixed point.
//!
//! This crate only reads tables. The bytes are put in the image by the app crate itself:
//! `rhea::main!` includes the file named by `RHEA_SYMTAB` (xtask sets it) into that section and
//! names it `__rhea_symtab`, which the runtime reads. So a new table recompiles the app crate
//! alone before the link, not the runtime and everything that depends on it (measured: 1.7 s
//! of the appliance's 5.5 s build went into recompiling the runtime and the network crate).
//!
//! Format (little-endian), written by `xtask/src/build/symtab.rs`:
//! ```text
//! "RSY3" | count: u32 | base: u64 | tokens: u32 | tokens_len: u32 | pairs: u32
//!        | pairs × [a: u8, b: u8]
//!        | tokens (tokens_len bytes): [len: u8][len code bytes] × tokens, in index order
//!        | count × entry, by start: gap: varint | size: varint | name
//! ```
//! An entry's start is the previous entry's start plus its size plus `gap` (the first's is
//! `base` plus `gap`); a size never reaches past the next entry's start. A varint is LEB128
//! (7 bits a byte, low first, the high bit set on all but the last byte).
//!
//! A name is `[n: u8]` then `n` token references (`n` < 0xff), each one byte (0..0x80) or two
//! (0x80 | index >> 8, index & 0xff); or `0xff` then a varint: the index of an earlier entry
//! whose name it is (a name used again — generic functions demangle alike — is stored once).
//!
//! A token is a run of identifier characters followed by a run of other characters
//! (`rhea_sched::`, `<`, `T,`): names share their path segments. Its code bytes are byte-pair
//! encoded: a byte below 0x80 is itself (ASCII); `0x80 + k` is pair `k` (`k` < pairs), which
//! stands for its bytes `a` then `b`, each ASCII or an earlier pair (below `0x80 + k`); `0xff`
//! is followed by one raw byte (a non-ASCII name). A token is at most 255 bytes decoded.
//!
//! Everything is bounds-checked: a missing or corrupt table makes lookups return `None`, never
//! read out of bounds or loop without end. No `unsafe`, no
//! allocation: usable from a fault handler. Lookups walk the entries (a few hundred bytes of
//! varints per lookup): only fault reports look.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

const MAGIC: &[u8; 4] = b"RSY3";
const HEADER: usize = 28;
/// A name's first byte saying "an earlier entry's name".
const REPEAT: u8 = 0xff;
/// The first pair code, and the code byte that escapes a raw byte.
const FIRST_PAIR: u8 = 0x80;
const ESCAPE: u8 = 0xff;
/// The longest decoded token.
const MAX_TOKEN: usize = 255;

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
    tokens: Tokens<'a>,
}

impl Name<'_> {
    /// Calls `f` with each token, decoded, in order; `None` for one that does not decode.
    fn for_each_part(
        self,
        mut f: impl FnMut(Option<&str>) -> core::fmt::Result,
    ) -> core::fmt::Result {
        let mut refs = self.refs;
        let mut buf = [0u8; MAX_TOKEN];
        while let Some((&first, rest)) = refs.split_first() {
            let index = if first < 0x80 {
                refs = rest;
                usize::from(first)
            } else {
                let Some((&second, rest)) = rest.split_first() else {
                    return f(None);
                };
                refs = rest;
                usize::from(first & 0x7f) << 8 | usize::from(second)
            };
            f(self.tokens.decode(index, &mut buf))?;
        }
        Ok(())
    }

    /// Checks that every reference resolves and decodes.
    fn check(self) -> Option<Self> {
        let mut ok = true;
        let _ = self.for_each_part(|p| {
            ok &= p.is_some();
            Ok(())
        });
        ok.then_some(self)
    }
}

impl core::fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.for_each_part(|part| f.write_str(part.unwrap_or("?")))
    }
}

/// The token dictionary: the byte pairs and the tokens' code bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Tokens<'a> {
    pairs: &'a [u8],
    bytes: &'a [u8],
    count: usize,
}

impl Tokens<'_> {
    /// Token `index`, decoded into `buf` (a linear walk: only fault reports look).
    fn decode<'b>(&self, index: usize, buf: &'b mut [u8; MAX_TOKEN]) -> Option<&'b str> {
        if index >= self.count {
            return None;
        }
        let mut at = 0usize;
        for _ in 0..index {
            at = at.checked_add(1 + usize::from(*self.bytes.get(at)?))?;
        }
        let len = usize::from(*self.bytes.get(at)?);
        let mut code = self.bytes.get(at + 1..at + 1 + len)?.iter();
        let mut out = 0usize;
        let mut push = |b: u8| -> Option<()> {
            *buf.get_mut(out)? = b;
            out += 1;
            Some(())
        };
        // Pairs expand through a stack; a pair names only earlier pairs, so it ends, and the
        // stack holds at most one entry per pair plus one.
        let mut stack = [0u8; 128];
        while let Some(&c) = code.next() {
            if c == ESCAPE {
                push(*code.next()?)?;
                continue;
            }
            let mut depth = 1;
            stack[0] = c;
            while depth > 0 {
                depth -= 1;
                let c = stack[depth];
                if c < FIRST_PAIR {
                    push(c)?;
                    continue;
                }
                let k = usize::from(c - FIRST_PAIR);
                let (a, b) = (*self.pairs.get(2 * k)?, *self.pairs.get(2 * k + 1)?);
                if (a >= FIRST_PAIR && a >= c) || (b >= FIRST_PAIR && b >= c) {
                    return None;
                }
                *stack.get_mut(depth)? = b;
                *stack.get_mut(depth + 1)? = a;
                depth += 2;
            }
        }
        core::str::from_utf8(&buf[..out]).ok()
    }
}

/// Number of symbols in `table` (0 when it is empty or not a table).
pub fn count_in(table: &[u8]) -> usize {
    Table::parse(table).map_or(0, |t| t.count)
}

/// Looks `addr` up in `table` (the image's own, or a corrupt one a host test feeds).
pub fn lookup_in(table: &[u8], addr: u64) -> Option<Symbol<'_>> {
    let t = Table::parse(table)?;
    // The last entry that starts at or below `addr`; every entry up to the one after it must
    // be whole, or the answer could be a wrong one.
    let mut found = None;
    let mut entries = t.entries();
    for _ in 0..t.count {
        let e = entries.next()?;
        if e.start > addr {
            break;
        }
        found = Some(e);
    }
    let e = found?;
    let offset = addr - e.start;
    if offset >= e.size.max(1) {
        return None;
    }
    Some(Symbol {
        name: t.name(e)?,
        offset,
    })
}

/// Reads a varint at `*at`, moving past it.
#[inline(never)]
fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b < 0x80 {
            return Some(value);
        }
    }
    None
}

struct Table<'a> {
    count: usize,
    base: u64,
    tokens: Tokens<'a>,
    entries: &'a [u8],
}

/// One entry: where its function starts, its size, and its index and name (at `name_at` in the
/// entries' bytes).
#[derive(Clone, Copy)]
struct Entry {
    start: u64,
    size: u64,
    index: usize,
    name_at: usize,
}

/// Walks the entries in order; `None` at the end or at the first one that is not whole.
struct Entries<'a> {
    bytes: &'a [u8],
    at: usize,
    index: usize,
    /// Where the next entry's gap counts from.
    end: u64,
}

impl Iterator for Entries<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        let gap = varint(self.bytes, &mut self.at)?;
        let size = varint(self.bytes, &mut self.at)?;
        let start = self.end.checked_add(gap)?;
        self.end = start.checked_add(size)?;
        let name_at = self.at;
        let n = *self.bytes.get(self.at)?;
        self.at += 1;
        if n == REPEAT {
            varint(self.bytes, &mut self.at)?;
        } else {
            for _ in 0..n {
                let first = *self.bytes.get(self.at)?;
                self.at += if first < 0x80 { 1 } else { 2 };
            }
            self.bytes.get(..self.at)?;
        }
        let index = self.index;
        self.index += 1;
        Some(Entry {
            start,
            size,
            index,
            name_at,
        })
    }
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
        let token_count = u32_at(16)?;
        let tokens_len = u32_at(20)?;
        let pair_count = u32_at(24)?;
        if pair_count > usize::from(ESCAPE - FIRST_PAIR) {
            return None;
        }
        let tokens_at = HEADER.checked_add(2 * pair_count)?;
        let entries_at = tokens_at.checked_add(tokens_len)?;
        Some(Self {
            count,
            base,
            tokens: Tokens {
                pairs: bytes.get(HEADER..tokens_at)?,
                bytes: bytes.get(tokens_at..entries_at)?,
                count: token_count,
            },
            entries: bytes.get(entries_at..)?,
        })
    }

    fn entries(&self) -> Entries<'a> {
        Entries {
            bytes: self.entries,
            at: 0,
            index: 0,
            end: self.base,
        }
    }

    /// The name of `entry` (an earlier entry's, for a repeat).
    fn name(&self, entry: Entry) -> Option<Name<'a>> {
        let mut at = entry.name_at;
        let mut n = *self.entries.get(at)?;
        if n == REPEAT {
            at += 1;
            let earlier = usize::try_from(varint(self.entries, &mut at)?).ok()?;
            if earlier >= entry.index {
                return None;
            }
            at = self.entries().nth(earlier)?.name_at;
            n = *self.entries.get(at)?;
            if n == REPEAT {
                return None;
            }
        }
        // At most two bytes per reference; the exact length is found by walking them.
        let avail = self.entries.get(at + 1..)?;
        let mut len = 0;
        for _ in 0..n {
            len += if *avail.get(len)? < 0x80 { 1 } else { 2 };
        }
        Name {
            refs: avail.get(..len)?,
            tokens: self.tokens,
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

    fn push_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A table in the documented format, from entries sorted by start that do not overlap:
    /// tokens in first-seen order, coded with `pairs` where a token's text holds one (greedily,
    /// the pairs' own text first; non-ASCII bytes escaped), a repeated name referring back.
    fn table_with(entries: &[(u64, u32, &str)], pairs: &[(u8, u8)]) -> Vec<u8> {
        let base = entries.first().map_or(0, |e| e.0);
        let mut tokens: Vec<&str> = Vec::new();
        let mut body = Vec::new();
        let mut end = base;
        for (i, &(start, size, name)) in entries.iter().enumerate() {
            push_varint(&mut body, start - end);
            push_varint(&mut body, u64::from(size));
            end = start + u64::from(size);
            if let Some(first) = entries[..i].iter().position(|e| e.2 == name) {
                body.push(REPEAT);
                push_varint(&mut body, first as u64);
                continue;
            }
            let parts = tokenize(name);
            body.push(parts.len() as u8);
            for p in parts {
                let i = tokens.iter().position(|t| *t == p).unwrap_or_else(|| {
                    tokens.push(p);
                    tokens.len() - 1
                });
                if i < 0x80 {
                    body.push(i as u8);
                } else {
                    body.extend_from_slice(&[0x80 | (i >> 8) as u8, i as u8]);
                }
            }
        }
        // The text each pair stands for.
        let mut texts: Vec<Vec<u8>> = Vec::new();
        for &(a, b) in pairs {
            let mut t = Vec::new();
            for c in [a, b] {
                if c < FIRST_PAIR {
                    t.push(c);
                } else {
                    t.extend_from_slice(&texts[usize::from(c - FIRST_PAIR)]);
                }
            }
            texts.push(t);
        }
        let mut coded = Vec::new();
        for t in &tokens {
            let bytes = t.as_bytes();
            let mut code = Vec::new();
            let mut at = 0;
            while at < bytes.len() {
                let longest = (0..texts.len())
                    .rev()
                    .find(|&k| bytes[at..].starts_with(&texts[k]));
                if let Some(k) = longest {
                    code.push(FIRST_PAIR + k as u8);
                    at += texts[k].len();
                } else if bytes[at] < 0x80 {
                    code.push(bytes[at]);
                    at += 1;
                } else {
                    code.extend_from_slice(&[ESCAPE, bytes[at]]);
                    at += 1;
                }
            }
            coded.push(code.len() as u8);
            coded.extend_from_slice(&code);
        }
        let mut out = Vec::from(*MAGIC);
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&base.to_le_bytes());
        out.extend_from_slice(&(tokens.len() as u32).to_le_bytes());
        out.extend_from_slice(&(coded.len() as u32).to_le_bytes());
        out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
        for &(a, b) in pairs {
            out.extend_from_slice(&[a, b]);
        }
        out.extend_from_slice(&coded);
        out.extend_from_slice(&body);
        out
    }

    fn table(entries: &[(u64, u32, &str)]) -> Vec<u8> {
        table_with(entries, &[])
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
        assert_eq!(len_of(&t), 3);
    }

    fn len_of(t: &[u8]) -> usize {
        Table::parse(t).map_or(0, |t| t.count)
    }

    #[test]
    fn long_functions_and_the_last() {
        let t = table(&[
            (0x10_0000, 0x6000, "big"),
            (0x10_6010, 0x10, "small"),
            (0x11_0000, 0x50000, "last_big"),
        ]);
        assert_eq!(found(&t, 0x10_5fff), Some(("big".into(), 0x5fff)));
        assert_eq!(found(&t, 0x10_600f), None, "padding after big");
        assert_eq!(found(&t, 0x10_6010), Some(("small".into(), 0)));
        assert_eq!(found(&t, 0x15_ffff), Some(("last_big".into(), 0x4_ffff)));
        assert_eq!(found(&t, 0x16_0000), None);
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
    fn repeated_names_and_pairs_and_escapes() {
        let entries = [
            (0x1000, 0x10, "<&T as core::fmt::Display>::fmt"),
            (0x1010, 0x10, "core::fmt::write"),
            (0x1020, 0x10, "<&T as core::fmt::Display>::fmt"),
            (0x1030, 0x10, "naïve::fmt"),
        ];
        // "fm", then "fm"+"t", then "co"+"re": nested pairs.
        let pairs = [
            (b'f', b'm'),
            (FIRST_PAIR, b't'),
            (b'c', b'o'),
            (FIRST_PAIR + 2, b'r'),
        ];
        let t = table_with(&entries, &pairs);
        for &(start, _, name) in &entries {
            assert_eq!(found(&t, start + 1), Some((name.to_string(), 1)));
        }
        // The repeat refers back to the first entry: the name is stored once.
        assert_eq!(t[t.len() - 10..t.len() - 6], [0, 0x10, REPEAT, 0]);
    }

    #[test]
    fn corrupt_tables_give_none_never_a_panic() {
        let pairs = [(b'a', b':'), (FIRST_PAIR, b':')];
        let good = table_with(
            &[
                (0x1000, 0x20, "a::f"),
                (0x2000, 0x20, "b::g"),
                (0x2020, 0x20, "a::f"),
            ],
            &pairs,
        );
        assert_eq!(found(&good, 0x1000), Some(("a::f".into(), 0)));
        assert_eq!(found(&good, 0x2030), Some(("a::f".into(), 0x10)));
        assert_eq!(found(&[], 0x1000), None);
        let mut magic = good.clone();
        magic[3] = b'M';
        assert_eq!(found(&magic, 0x1000), None);
        // A claimed count larger than the entries: a lookup past the last whole one fails.
        let mut big = good.clone();
        big[4..8].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(found(&big, 0x3000), None);
        // A base that overflows with the sizes added.
        let mut base = good.clone();
        base[8..16].copy_from_slice(&(u64::MAX - 0x10).to_le_bytes());
        assert_eq!(found(&base, 0x2000), None);
        // Lengths longer than the bytes, and too many pairs.
        for at in [20, 24] {
            let mut long = good.clone();
            long[at..at + 4].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
            assert_eq!(found(&long, 0x1000), None);
        }
        // Fewer tokens than referenced.
        let mut few = good.clone();
        few[16..20].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(found(&few, 0x2000), None);
        // A pair naming itself or a later pair, or one past the table.
        let first_pair = HEADER;
        for bad in [FIRST_PAIR + 1, FIRST_PAIR + 2] {
            let mut cyclic = good.clone();
            cyclic[first_pair + 2] = bad;
            assert_eq!(found(&cyclic, 0x1000), None);
        }
        // A repeat that refers to itself or to a later entry.
        let repeat_at = good.len() - 2;
        assert_eq!(good[repeat_at], REPEAT);
        for bad in [2, 3, 0x7f] {
            let mut forward = good.clone();
            forward[repeat_at + 1] = bad;
            assert_eq!(found(&forward, 0x2030), None);
        }
        // Every truncation and every single-byte change of a good table is handled.
        for cut in 0..good.len() {
            for addr in [0x1000, 0x2010, 0x2030] {
                let _ = found(&good[..cut], addr);
            }
        }
        for i in 0..good.len() {
            for v in [0, 1, 0x7f, 0x80, 0x81, 0xfe, 0xff] {
                let mut t = good.clone();
                t[i] = v;
                for addr in [0x1000, 0x2010, 0x2030] {
                    let _ = found(&t, addr).map(|s| s.0.len());
                }
            }
        }
        // Invalid UTF-8 in a token.
        let mut bad_utf8 = table(&[(0x1000, 0x20, "a::f")]);
        let tokens_at = HEADER;
        bad_utf8[tokens_at + 1] = ESCAPE;
        bad_utf8[tokens_at + 2] = 0xff;
        assert_eq!(found(&bad_utf8, 0x1000), None);
    }
}
