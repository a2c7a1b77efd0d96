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
//! offset 0:  magic b"RSY3"
//! offset 4:  u32 count
//! offset 8:  u64 base: the lowest start address
//! offset 16: u32 tokens
//! offset 20: u32 tokens_len
//! offset 24: u32 pairs (at most 127)
//! offset 28: pairs × [a: u8, b: u8]
//! then tokens_len bytes of tokens, each [len: u8][len code bytes], index 0 first
//! then count entries, by start: gap: varint | size: varint | name
//! ```
//!
//! An entry's start is the previous one's start plus size plus its gap (the first's: base plus
//! gap); a size is cut to reach at most the next start. A varint is LEB128. A name is `[n: u8]`
//! then `n` token references (n < 0xff), a reference one byte (index < 0x80) or two
//! (0x80 | index >> 8, index & 0xff); or `0xff` then a varint, the index of the first entry
//! with the same name (generic functions demangle alike: hello has some 50 such repeats).
//!
//! A token is a run of identifier characters (`[A-Za-z0-9_]`) followed by a run of other
//! characters, so `<rhea_sched::Sched as core::fmt::Debug>::fmt` is `<`, `rhea_sched::`,
//! `Sched `, `as `, `core::`, `fmt::`, `Debug>::`, `fmt`: names share their path segments.
//! Tokens are numbered by how many names use them, most first (ties by the token), so the
//! common ones take one byte. Their text is byte-pair encoded: code byte `0x80 + k` stands for
//! pair `k`'s two bytes (each ASCII or an earlier pair), `0xff` escapes one raw (non-ASCII)
//! byte; the pairs are chosen greedily, the most frequent adjacent pair of the tokens' codes
//! first, while one occurs at least [`MIN_PAIR_USES`] times. Names of more than 254 tokens keep
//! the first 254; tokens longer than 255 bytes (or codes, non-ASCII escaped) are cut at a char
//! boundary. When several symbols share a start address, the first by name order is kept.

use object::read::elf::{ElfFile64, FileHeader, Sym};
use object::{Endianness, Object, ObjectSymbol, elf};

/// The first four bytes of an encoded table.
pub(crate) const MAGIC: &[u8; 4] = b"RSY3";
/// Bytes before the pairs.
pub(crate) const HEADER_LEN: usize = 28;
/// The longest token kept, in bytes, and the most tokens a name keeps.
pub(crate) const MAX_TOKEN: usize = 255;
const MAX_NAME_TOKENS: usize = 254;
/// Token indexes a two-byte reference can hold.
const MAX_TOKENS: usize = 0x8000;
/// A name's first byte saying "the name of an earlier entry".
const REPEAT: u8 = 0xff;
/// The first pair code, the escape code, and how many pairs fit between them.
const FIRST_PAIR: u8 = 0x80;
const ESCAPE: u8 = 0xff;
const MAX_PAIRS: usize = (ESCAPE - FIRST_PAIR) as usize;
/// A pair is made only if it replaces at least this many code bytes (it costs two).
const MIN_PAIR_USES: usize = 3;

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
    out.truncate(MAX_NAME_TOKENS);
    out
}

/// Cuts `token` at a char boundary to at most [`MAX_TOKEN`] bytes, and to at most as many
/// code bytes (a non-ASCII byte takes two).
fn truncate(token: &str) -> &str {
    let mut end = 0;
    let mut code = 0;
    for (i, c) in token.char_indices() {
        let (bytes, codes) = (
            c.len_utf8(),
            if c.is_ascii() { 1 } else { 2 * c.len_utf8() },
        );
        if i + bytes > MAX_TOKEN || code + codes > MAX_TOKEN {
            break;
        }
        end = i + bytes;
        code += codes;
    }
    &token[..end]
}

/// Appends `v` as a LEB128 varint.
fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Byte-pair encodes the tokens: their code bytes, and the pairs.
fn pair_encode(tokens: &[&str]) -> (Vec<Vec<u8>>, Vec<[u8; 2]>) {
    use std::collections::BTreeMap;
    // Symbols: a code byte, or `ESCAPE` + the raw byte as one unit that never pairs.
    let mut codes: Vec<Vec<u16>> = tokens
        .iter()
        .map(|t| {
            t.bytes()
                .map(|b| {
                    if b < 0x80 {
                        u16::from(b)
                    } else {
                        0x100 | u16::from(b)
                    }
                })
                .collect()
        })
        .collect();
    let mut pairs = Vec::new();
    while pairs.len() < MAX_PAIRS {
        let mut uses: BTreeMap<(u16, u16), usize> = BTreeMap::new();
        for code in &codes {
            let mut prev: Option<(u16, u16)> = None;
            for w in code.windows(2) {
                let pair = (w[0], w[1]);
                if pair.0 >= 0x100 || pair.1 >= 0x100 {
                    prev = None;
                    continue;
                }
                // `aaa` holds one `aa` that a replacement can use, not two.
                if prev == Some(pair) && pair.0 == pair.1 {
                    prev = None;
                    continue;
                }
                *uses.entry(pair).or_default() += 1;
                prev = Some(pair);
            }
        }
        // The most used pair; ties to the smallest.
        let Some((&best, &n)) = uses
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        else {
            break;
        };
        if n < MIN_PAIR_USES {
            break;
        }
        let code = u16::from(FIRST_PAIR) + pairs.len() as u16;
        pairs.push([best.0 as u8, best.1 as u8]);
        for c in &mut codes {
            let mut out = Vec::with_capacity(c.len());
            let mut i = 0;
            while i < c.len() {
                if i + 1 < c.len() && (c[i], c[i + 1]) == best {
                    out.push(code);
                    i += 2;
                } else {
                    out.push(c[i]);
                    i += 1;
                }
            }
            *c = out;
        }
    }
    let codes = codes
        .into_iter()
        .map(|c| {
            let mut out = Vec::with_capacity(c.len());
            for s in c {
                if s >= 0x100 {
                    out.extend_from_slice(&[ESCAPE, s as u8]);
                } else {
                    out.push(s as u8);
                }
            }
            out
        })
        .collect();
    (codes, pairs)
}

/// Encodes symbols (in any order) into the table format described in the module docs.
pub(crate) fn encode(symbols: &[Symbol]) -> Vec<u8> {
    use std::collections::{BTreeMap, HashMap};

    let mut sorted: Vec<&Symbol> = symbols.iter().collect();
    sorted.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.name.cmp(&b.name)));
    sorted.dedup_by_key(|s| s.start);
    let base = sorted.first().map_or(0, |s| s.start);

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
    let texts: Vec<&str> = tokens.iter().map(|t| t.0).collect();
    let (codes, pairs) = pair_encode(&texts);

    let mut entries = Vec::new();
    let mut first_with: HashMap<&str, usize> = HashMap::new();
    let mut end = base;
    for (i, sym) in sorted.iter().enumerate() {
        let size = match sorted.get(i + 1) {
            Some(next) => sym.size.min(next.start - sym.start),
            None => sym.size,
        };
        push_varint(&mut entries, sym.start - end);
        push_varint(&mut entries, size);
        end = sym.start + size;
        if let Some(&first) = first_with.get(sym.name.as_str()) {
            entries.push(REPEAT);
            push_varint(&mut entries, first as u64);
            continue;
        }
        first_with.insert(sym.name.as_str(), i);
        let parts = tokenize(&sym.name);
        entries.push(parts.len() as u8);
        for part in parts {
            let i = index[part];
            if i < 0x80 {
                entries.push(i as u8);
            } else {
                entries.extend_from_slice(&[0x80 | (i >> 8) as u8, i as u8]);
            }
        }
    }

    let mut token_bytes = Vec::new();
    for code in &codes {
        token_bytes.push(code.len() as u8);
        token_bytes.extend_from_slice(code);
    }
    let count = u32::try_from(sorted.len()).expect("more than 4G symbols");
    let mut out =
        Vec::with_capacity(HEADER_LEN + 2 * pairs.len() + token_bytes.len() + entries.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&base.to_le_bytes());
    out.extend_from_slice(&(tokens.len() as u32).to_le_bytes());
    out.extend_from_slice(
        &u32::try_from(token_bytes.len())
            .expect("tokens over 4 GiB")
            .to_le_bytes(),
    );
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for pair in &pairs {
        out.extend_from_slice(pair);
    }
    out.extend_from_slice(&token_bytes);
    out.extend_from_slice(&entries);
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
    fn decode(bytes: &[u8]) -> Vec<(u64, u64, String)> {
        assert_eq!(&bytes[..4], MAGIC);
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let count = word(4) as usize;
        let base = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
        let pairs_at = 28;
        let tokens_at = pairs_at + 2 * word(24) as usize;
        let entries_at = tokens_at + word(20) as usize;
        fn expand(pairs: &[u8], c: u8, out: &mut Vec<u8>) {
            if c < 0x80 {
                out.push(c);
            } else {
                let k = usize::from(c - 0x80);
                expand(pairs, pairs[2 * k], out);
                expand(pairs, pairs[2 * k + 1], out);
            }
        }
        let mut tokens = Vec::new();
        let mut at = tokens_at;
        while at < entries_at {
            let len = bytes[at] as usize;
            let code = &bytes[at + 1..at + 1 + len];
            let mut text = Vec::new();
            let mut i = 0;
            while i < code.len() {
                if code[i] == 0xff {
                    text.push(code[i + 1]);
                    i += 2;
                } else {
                    expand(&bytes[pairs_at..tokens_at], code[i], &mut text);
                    i += 1;
                }
            }
            tokens.push(String::from_utf8(text).unwrap());
            at += 1 + len;
        }
        assert_eq!(at, entries_at, "the tokens end where their length says");
        assert_eq!(tokens.len(), word(16) as usize);
        let varint = |at: &mut usize| {
            let (mut v, mut shift) = (0u64, 0);
            loop {
                let b = bytes[*at];
                *at += 1;
                v |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b < 0x80 {
                    return v;
                }
            }
        };
        let mut out: Vec<(u64, u64, String)> = Vec::new();
        let mut at = entries_at;
        let mut end = base;
        for _ in 0..count {
            let start = end + varint(&mut at);
            let size = varint(&mut at);
            end = start + size;
            let n = bytes[at];
            at += 1;
            let name = if n == 0xff {
                let first = varint(&mut at) as usize;
                assert!(first < out.len());
                out[first].2.clone()
            } else {
                let mut name = String::new();
                for _ in 0..n {
                    let index = if bytes[at] < 0x80 {
                        at += 1;
                        bytes[at - 1] as usize
                    } else {
                        at += 2;
                        ((bytes[at - 2] & 0x7f) as usize) << 8 | bytes[at - 1] as usize
                    };
                    name.push_str(&tokens[index]);
                }
                name
            };
            out.push((start, size, name));
        }
        assert_eq!(at, bytes.len(), "trailing bytes after the entries");
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
        assert_eq!(
            encode(&[]),
            b"RSY3\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
        );
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
                // Cut at the next start.
                (0x20_0200, 0x100, "huge".to_string()),
                (
                    0x20_0300,
                    8,
                    "<rhea::S as core::fmt::Debug>::fmt".to_string()
                ),
                (0x20_0400, 8, "rhea::main".to_string()),
            ]
        );
        // Exact layout of the header and the first and last entries; the repeated name is
        // stored once.
        assert_eq!(&bytes[4..8], &5u32.to_le_bytes());
        assert_eq!(&bytes[8..16], &0x20_0000u64.to_le_bytes());
        assert_eq!(bytes[bytes.len() - 5..], [0xf8, 0x01, 8, 0xff, 0x01]);
        // The last is also the largest: a huge size is kept.
        let last = encode(&[sym(0x1000, 1 << 40, "huge")]);
        assert_eq!(decode(&last), [(0x1000, 1 << 40, "huge".to_string())]);
    }

    #[test]
    fn pairs_shrink_shared_text_and_escape_non_ascii() {
        let names = [
            "rhea_board_common_x86::calibrate::measure",
            "rhea_board_common_x86::calibrate::measure_rate",
            "rhea_board_common_x86::interrupts::init",
            "naïve::fünf",
        ];
        let syms: Vec<Symbol> = names
            .iter()
            .enumerate()
            .map(|(i, n)| sym(0x1000 + 16 * i as u64, 16, n))
            .collect();
        let bytes = encode(&syms);
        let decoded = decode(&bytes);
        assert!(decoded.iter().zip(names).all(|(d, n)| d.2 == n));
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        assert!(word(24) > 0, "no pairs");
        // The tokens' codes are shorter than their text (the escapes longer).
        let mut tokens: Vec<&str> = names.iter().flat_map(|n| tokenize(n)).collect();
        tokens.sort_unstable();
        tokens.dedup();
        let text: usize = tokens.iter().map(|t| 1 + t.len()).sum();
        assert!(
            (word(20) as usize) < text,
            "{} code bytes for {text}",
            word(20)
        );
        // The same input, the same table (xtask's fixed point needs it).
        assert_eq!(encode(&syms), bytes);
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
        // Escaped, "é" takes four code bytes: 250 ASCII and one "é" fit, a second does not.
        let escaped = format!("{}ééé", "c".repeat(250));
        let decoded = decode(&encode(&[sym(1, 1, &escaped)]));
        assert_eq!(decoded[0].2, format!("{}é", "c".repeat(250)));
        // A name of more than 254 tokens keeps the first 254.
        let long = "x::".repeat(300);
        assert_eq!(decode(&encode(&[sym(1, 1, &long)]))[0].2, "x::".repeat(254));
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
