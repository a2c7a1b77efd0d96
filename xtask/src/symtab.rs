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
//! offset 0: magic b"RSYM"
//! offset 4: u32 count
//! offset 8: count entries of 16 bytes { start: u64, size: u32, name_off: u32 }, by start
//! names_base = 8 + 16 * count: names, each [len: u8][len bytes UTF-8];
//!                               name_off is relative to names_base
//! ```
//!
//! Names longer than 255 bytes are cut at a char boundary. When several symbols share a start
//! address, the first by name order is kept.

use object::read::elf::{ElfFile64, FileHeader, Sym};
use object::{Endianness, Object, ObjectSymbol, elf};

/// The first four bytes of an encoded table.
pub(crate) const MAGIC: &[u8; 4] = b"RSYM";
/// Bytes before the entries.
pub(crate) const HEADER_LEN: usize = 8;
/// Bytes per entry.
pub(crate) const ENTRY_LEN: usize = 16;
/// The longest name kept, in bytes.
pub(crate) const MAX_NAME: usize = 255;

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

/// Cuts `name` to at most [`MAX_NAME`] bytes at a char boundary.
fn truncate_name(name: &str) -> &str {
    if name.len() <= MAX_NAME {
        return name;
    }
    let mut end = MAX_NAME;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// Encodes symbols (in any order) into the table format described in the module docs.
pub(crate) fn encode(symbols: &[Symbol]) -> Vec<u8> {
    let mut sorted: Vec<&Symbol> = symbols.iter().collect();
    sorted.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.name.cmp(&b.name)));
    sorted.dedup_by_key(|s| s.start);

    let mut entries = Vec::with_capacity(sorted.len() * ENTRY_LEN);
    let mut names = Vec::new();
    for sym in &sorted {
        let name = truncate_name(&sym.name);
        let name_off = u32::try_from(names.len()).expect("names blob over 4 GiB");
        entries.extend_from_slice(&sym.start.to_le_bytes());
        entries.extend_from_slice(&u32::try_from(sym.size).unwrap_or(u32::MAX).to_le_bytes());
        entries.extend_from_slice(&name_off.to_le_bytes());
        names.push(name.len() as u8);
        names.extend_from_slice(name.as_bytes());
    }

    let count = u32::try_from(sorted.len()).expect("more than 4G symbols");
    let mut out = Vec::with_capacity(HEADER_LEN + entries.len() + names.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&entries);
    out.extend_from_slice(&names);
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
        let count = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
        let names_base = 8 + 16 * count;
        let mut out = Vec::new();
        let mut names_end = names_base;
        for i in 0..count {
            let e = &bytes[8 + 16 * i..8 + 16 * (i + 1)];
            let start = u64::from_le_bytes(e[0..8].try_into().unwrap());
            let size = u32::from_le_bytes(e[8..12].try_into().unwrap());
            let off = u32::from_le_bytes(e[12..16].try_into().unwrap()) as usize;
            let len = bytes[names_base + off] as usize;
            let name_start = names_base + off + 1;
            let name = std::str::from_utf8(&bytes[name_start..name_start + len]).unwrap();
            names_end = names_end.max(name_start + len);
            out.push((start, size, name.to_string()));
        }
        assert_eq!(names_end, bytes.len(), "trailing bytes after the names");
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
        assert_eq!(encode(&[]), b"RSYM\0\0\0\0");
        assert!(decode(&encode(&[])).is_empty());
    }

    #[test]
    fn round_trip_sorted_by_start() {
        let syms = [
            sym(0x20_0100, 0x40, "rhea::main"),
            sym(0x20_0000, 0x10, "_start"),
            sym(0x20_0200, 1 << 40, "huge"),
        ];
        let bytes = encode(&syms);
        assert_eq!(
            decode(&bytes),
            [
                (0x20_0000, 0x10, "_start".to_string()),
                (0x20_0100, 0x40, "rhea::main".to_string()),
                (0x20_0200, u32::MAX, "huge".to_string()),
            ]
        );
        // Exact layout of the first entry and the names blob.
        assert_eq!(&bytes[4..8], &3u32.to_le_bytes());
        assert_eq!(&bytes[8..16], &0x20_0000u64.to_le_bytes());
        assert_eq!(&bytes[20..24], &0u32.to_le_bytes());
        assert_eq!(&bytes[8 + 48..8 + 48 + 7], b"\x06_start");
    }

    #[test]
    fn shared_start_keeps_first_name() {
        let a = encode(&[sym(0x1000, 8, "zeta"), sym(0x1000, 8, "alpha")]);
        let b = encode(&[sym(0x1000, 8, "alpha"), sym(0x1000, 8, "zeta")]);
        assert_eq!(a, b);
        assert_eq!(decode(&a), [(0x1000, 8, "alpha".to_string())]);
    }

    #[test]
    fn long_names_truncated_at_char_boundary() {
        let ascii = "a".repeat(300);
        // 254 ASCII bytes then a 3-byte char straddling the 255-byte limit.
        let straddle = format!("{}€tail", "b".repeat(254));
        let bytes = encode(&[sym(1, 1, &ascii), sym(2, 1, &straddle)]);
        let decoded = decode(&bytes);
        assert_eq!(decoded[0].2, "a".repeat(255));
        assert_eq!(decoded[1].2, "b".repeat(254));
    }

    #[test]
    fn finds_embedded_table() {
        let table = encode(&[sym(0x1000, 4, "f")]);
        let mut image = b"code RSYM-ish data".to_vec();
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
