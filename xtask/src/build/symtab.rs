//! The kernel's embedded function symbol table: extraction from an ELF and encoding.
//!
//! The kernel names functions in fault reports from a table built into its own image. After a
//! build, xtask reads the ELF's function symbols (`STT_FUNC`, size > 0, address != 0),
//! demangles them (`{:#}` form: no hash) and encodes them as below; `image.rs` feeds the bytes
//! back into the next build (through the file named by `RHEA_SYMTAB`) until they stop changing.
//!
//! Format, all integers little-endian:
//!
//! ```text
//! offset 0:  magic b"RSY2"
//! offset 4:  u32 count
//! offset 8:  u64 base: the lowest start address
//! offset 16: u32 names_len
//! offset 20: u32 tokens
//! offset 24: count entries of 8 bytes { start: u32 (minus base), extent: u32 }, by start;
//!            extent = name_off << 14 | size, where a size of 0x3fff or more is stored as
//!            0x3fff (LONG): "up to the next function's start" (the last one: LONG bytes)
//! names_base = 24 + 8 * count: names_len bytes of names, each [n: u8][n token references];
//!            a reference is one byte (index < 0x80) or two (0x80 | index >> 8, index & 0xff);
//!            name_off is relative to names_base; equal names are stored once
//! then the tokens, each [len: u8][len bytes UTF-8], index 0 first
//! ```
//!
//! A token is a run of identifier characters (`[A-Za-z0-9_]`) followed by a run of other
//! characters, so `<rhea_sched::Sched as core::fmt::Debug>::fmt` is `<`, `rhea_sched::`,
//! `Sched `, `as `, `core::`, `fmt::`, `Debug>::`, `fmt`: names share their path segments.
//! Tokens are numbered by how many names use them, most first (ties by the token), so the
//! common ones take one byte. Names of more than 255 tokens keep the first 255; tokens longer
//! than 255 bytes are cut at a char boundary. When several symbols share a start address, the
//! first by name order is kept; a symbol more than 4 GiB above the lowest is left out. The names
//! may take 256 KiB (18 bits of name_off).

use object::read::elf::{ElfFile64, FileHeader, Sym};
use object::{Endianness, Object, ObjectSymbol, elf};

/// The first four bytes of an encoded table.
pub(crate) const MAGIC: &[u8; 4] = b"RSY2";
/// Bytes before the entries.
pub(crate) const HEADER_LEN: usize = 24;
/// Bytes per entry.
pub(crate) const ENTRY_LEN: usize = 8;
/// The size field's width in an entry's extent, and its "up to the next function" value.
const SIZE_BITS: u32 = 14;
const LONG: u64 = (1 << SIZE_BITS) - 1;
/// The longest token kept, in bytes, and the most tokens a name keeps.
pub(crate) const MAX_TOKEN: usize = 255;
/// Token indexes a two-byte reference can hold.
const MAX_TOKENS: usize = 0x8000;

/// One function symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Symbol {
    pub(crate) start: u64,
    pub(crate) size: u64,
    /// The demangled name.
    pub(crate) name: String,
}

/// Collects the defined function symbols of a 64-bit ELF image, demangled, in file order.
pub(crate) fn function_symbols(elf_bytes: &[u8]) -> Result<Vec<Symbol>, String> {
    let file = ElfFile64::<Endianness>::parse(elf_bytes)
        .map_err(|e| format!("not a 64-bit ELF file: {e}"))?;
    let endian = file.elf_header().endian().map_err(|e| e.to_string())?;
    if file.elf_symbol_table().is_empty() {
        return Err("the ELF has no symbol table (stripped?)".to_string());
    }
    let mut out = Vec::new();
    for sym in file.symbols() {
        let raw = sym.elf_symbol();
        let defined = raw.st_shndx(endian) != elf::SHN_UNDEF;
        if raw.st_type() != elf::STT_FUNC || !defined || sym.size() == 0 || sym.address() == 0 {
            continue;
        }
        let Ok(name) = sym.name() else { continue };
        if name.is_empty() {
            continue;
        }
        out.push(Symbol {
            start: sym.address(),
            size: sym.size(),
            name: format!("{:#}", rustc_demangle::demangle(name)),
        });
    }
    Ok(out)
}

/// Splits a name into tokens: a run of identifier characters, then a run of others.
pub(crate) fn tokenize(name: &str) -> Vec<&str> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let mut rest = name;
    while !rest.is_empty() {
        let idents = rest.find(|c| !ident(c)).unwrap_or(rest.len());
        let end = rest[idents..]
            .find(ident)
            .map_or(rest.len(), |i| idents + i);
        let (token, tail) = rest.split_at(end);
        out.push(truncate(token));
        rest = tail;
    }
    out.truncate(MAX_TOKEN);
    out
}

/// Cuts `token` to at most [`MAX_TOKEN`] bytes at a char boundary.
fn truncate(token: &str) -> &str {
    if token.len() <= MAX_TOKEN {
        return token;
    }
    let mut end = MAX_TOKEN;
    while !token.is_char_boundary(end) {
        end -= 1;
    }
    &token[..end]
}

/// Encodes symbols (in any order) into the table format described in the module docs.
pub(crate) fn encode(symbols: &[Symbol]) -> Vec<u8> {
    use std::collections::{BTreeMap, HashMap};

    let mut sorted: Vec<&Symbol> = symbols.iter().collect();
    sorted.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.name.cmp(&b.name)));
    sorted.dedup_by_key(|s| s.start);
    let base = sorted.first().map_or(0, |s| s.start);
    sorted.retain(|s| s.start - base <= u64::from(u32::MAX));

    // Tokens by the number of distinct names using them, most first.
    let mut distinct: Vec<&str> = sorted.iter().map(|s| s.name.as_str()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let mut uses: BTreeMap<&str, usize> = BTreeMap::new();
    for name in &distinct {
        for token in tokenize(name) {
            *uses.entry(token).or_default() += 1;
        }
    }
    let mut tokens: Vec<(&str, usize)> = uses.into_iter().collect();
    tokens.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    assert!(
        tokens.len() <= MAX_TOKENS,
        "more than {MAX_TOKENS} distinct name tokens"
    );
    let index: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.0, i)).collect();

    let mut entries = Vec::with_capacity(sorted.len() * ENTRY_LEN);
    let mut names = Vec::new();
    let mut stored: HashMap<&str, u32> = HashMap::new();
    for sym in &sorted {
        let name_off = *stored.entry(sym.name.as_str()).or_insert_with(|| {
            let off = u32::try_from(names.len()).expect("names blob over 4 GiB");
            let parts = tokenize(&sym.name);
            names.push(parts.len() as u8);
            for part in parts {
                let i = index[part];
                if i < 0x80 {
                    names.push(i as u8);
                } else {
                    names.extend_from_slice(&[0x80 | (i >> 8) as u8, i as u8]);
                }
            }
            off
        });
        assert!(
            name_off < 1 << (32 - SIZE_BITS),
            "the symbol names take more than 256 KiB"
        );
        let extent = name_off << SIZE_BITS | sym.size.min(LONG) as u32;
        entries.extend_from_slice(&((sym.start - base) as u32).to_le_bytes());
        entries.extend_from_slice(&extent.to_le_bytes());
    }

    let count = u32::try_from(sorted.len()).expect("more than 4G symbols");
    let mut out = Vec::with_capacity(HEADER_LEN + entries.len() + names.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&base.to_le_bytes());
    out.extend_from_slice(
        &u32::try_from(names.len())
            .expect("names blob over 4 GiB")
            .to_le_bytes(),
    );
    out.extend_from_slice(&(tokens.len() as u32).to_le_bytes());
    out.extend_from_slice(&entries);
    out.extend_from_slice(&names);
    for (token, _) in &tokens {
        out.push(token.len() as u8);
        out.extend_from_slice(token.as_bytes());
    }
    out
}

/// Whether `table` appears byte for byte inside `image` (i.e. the image embeds it).
pub(crate) fn image_contains(image: &[u8], table: &[u8]) -> bool {
    if table.len() < MAGIC.len() {
        return false;
    }
    image
        .windows(MAGIC.len())
        .enumerate()
        .filter(|(_, w)| *w == MAGIC)
        .any(|(i, _)| image[i..].starts_with(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoder written from the format description, independent of the encoder.
    fn decode(bytes: &[u8]) -> Vec<(u64, u32, String)> {
        assert_eq!(&bytes[..4], MAGIC);
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let count = word(4) as usize;
        let base = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
        let names_base = 24 + 8 * count;
        let tokens_base = names_base + word(16) as usize;
        let mut tokens = Vec::new();
        let mut at = tokens_base;
        while at < bytes.len() {
            let len = bytes[at] as usize;
            tokens.push(std::str::from_utf8(&bytes[at + 1..at + 1 + len]).unwrap());
            at += 1 + len;
        }
        assert_eq!(at, bytes.len(), "trailing bytes after the tokens");
        assert_eq!(tokens.len(), word(20) as usize);
        let mut out = Vec::new();
        for i in 0..count {
            let e = 24 + 8 * i;
            let start = base + u64::from(word(e));
            let size = word(e + 4) & 0x3fff;
            let mut at = names_base + (word(e + 4) >> 14) as usize;
            let n = bytes[at];
            at += 1;
            let mut name = String::new();
            for _ in 0..n {
                let index = if bytes[at] < 0x80 {
                    at += 1;
                    bytes[at - 1] as usize
                } else {
                    at += 2;
                    ((bytes[at - 2] & 0x7f) as usize) << 8 | bytes[at - 1] as usize
                };
                name.push_str(tokens[index]);
            }
            assert!(at <= tokens_base);
            out.push((start, size, name));
        }
        out
    }

    fn sym(start: u64, size: u64, name: &str) -> Symbol {
        Symbol {
            start,
            size,
            name: name.to_string(),
        }
    }

    #[test]
    fn empty_table() {
        assert_eq!(encode(&[]), b"RSY2\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        assert!(decode(&encode(&[])).is_empty());
    }

    #[test]
    fn round_trip_sorted_by_start() {
        let syms = [
            sym(0x20_0100, 0x40, "rhea::main"),
            sym(0x20_0000, 0x10, "_start"),
            sym(0x20_0200, 1 << 40, "huge"),
            sym(0x20_0300, 8, "<rhea::S as core::fmt::Debug>::fmt"),
            sym(0x20_0400, 8, "rhea::main"),
        ];
        let bytes = encode(&syms);
        assert_eq!(
            decode(&bytes),
            [
                (0x20_0000, 0x10, "_start".to_string()),
                (0x20_0100, 0x40, "rhea::main".to_string()),
                (0x20_0200, 0x3fff, "huge".to_string()),
                (
                    0x20_0300,
                    8,
                    "<rhea::S as core::fmt::Debug>::fmt".to_string()
                ),
                (0x20_0400, 8, "rhea::main".to_string()),
            ]
        );
        // Exact layout of the header and the first entry; the repeated name is stored once.
        assert_eq!(&bytes[4..8], &5u32.to_le_bytes());
        assert_eq!(&bytes[8..16], &0x20_0000u64.to_le_bytes());
        assert_eq!(&bytes[24..28], &0u32.to_le_bytes());
        assert_eq!(&bytes[28..32], &0x10u32.to_le_bytes());
        let name_off =
            |i: usize| u32::from_le_bytes(bytes[28 + 8 * i..32 + 8 * i].try_into().unwrap()) >> 14;
        assert_eq!(name_off(1), name_off(4));
    }

    #[test]
    fn tokens_share_path_segments() {
        assert_eq!(
            tokenize("<rhea_sched::Sched as core::fmt::Debug>::fmt"),
            [
                "<",
                "rhea_sched::",
                "Sched ",
                "as ",
                "core::",
                "fmt::",
                "Debug>::",
                "fmt"
            ]
        );
        assert_eq!(tokenize("f"), ["f"]);
        assert!(tokenize("").is_empty());
        // Many distinct tokens: two-byte references round-trip.
        let syms: Vec<Symbol> = (0..300)
            .map(|i| sym(0x1000 + i * 16, 16, &format!("m{i}::f{i}")))
            .collect();
        let decoded = decode(&encode(&syms));
        assert_eq!(decoded.len(), 300);
        assert!(decoded.iter().zip(&syms).all(|(d, s)| d.2 == s.name));
    }

    #[test]
    fn shared_start_keeps_first_name() {
        let a = encode(&[sym(0x1000, 8, "zeta"), sym(0x1000, 8, "alpha")]);
        let b = encode(&[sym(0x1000, 8, "alpha"), sym(0x1000, 8, "zeta")]);
        assert_eq!(a, b);
        assert_eq!(decode(&a), [(0x1000, 8, "alpha".to_string())]);
    }

    #[test]
    fn long_tokens_truncated_at_char_boundary() {
        let ascii = "a".repeat(300);
        // 254 ASCII bytes then a 3-byte char straddling the 255-byte limit.
        let straddle = format!("{}€tail", "b".repeat(254));
        let bytes = encode(&[sym(1, 1, &ascii), sym(2, 1, &straddle)]);
        let decoded = decode(&bytes);
        assert_eq!(decoded[0].2, "a".repeat(255));
        assert!(decoded[1].2.starts_with(&"b".repeat(254)));
        // A name of more than 255 tokens keeps the first 255.
        let long = "x::".repeat(300);
        assert_eq!(decode(&encode(&[sym(1, 1, &long)]))[0].2, "x::".repeat(255));
    }

    #[test]
    fn finds_embedded_table() {
        let table = encode(&[sym(0x1000, 4, "f")]);
        let mut image = b"code RSY2-ish data".to_vec();
        image.extend_from_slice(&table);
        image.extend_from_slice(b"tail");
        assert!(image_contains(&image, &table));
        let other = encode(&[sym(0x1000, 4, "g")]);
        assert!(!image_contains(&image, &other));
        assert!(!image_contains(&image, b""));
    }

    /// The test binary itself is an ELF with function symbols on Linux.
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    #[test]
    fn reads_function_symbols_of_an_elf() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let syms = function_symbols(&exe).unwrap();
        assert!(syms.iter().all(|s| s.size > 0 && s.start != 0));
        assert!(
            syms.iter()
                .any(|s| s.name.contains("reads_function_symbols_of_an_elf")),
            "no demangled test function among {} symbols",
            syms.len()
        );
        // Demangled without the hash suffix.
        assert!(!syms.iter().any(|s| is_hash_suffixed(&s.name)));
        assert!(function_symbols(b"not an elf").is_err());
    }

    fn is_hash_suffixed(name: &str) -> bool {
        name.rsplit_once("::h")
            .is_some_and(|(_, h)| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    }
}
