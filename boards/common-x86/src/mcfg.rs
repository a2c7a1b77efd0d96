//! The ACPI MCFG (PCI Firmware Specification 3.2 §4.1.2): where each PCI segment's ECAM window
//! (PCI Express enhanced configuration access) lies and which buses it covers.
//!
//! Read in early boot next to the MADT (same RSDP, same identity window). The `acpi` crate
//! finds the table and checks its signature and checksum; [`parse`] then reads the entries
//! itself: the crate's `Mcfg::entries` computes the count from the header length without
//! checking it (a length below the fixed part underflows). Malformed tables are refused with
//! a reason; the board then uses legacy configuration ports.
#![allow(
    unsafe_code,
    reason = "reading the table in place through the acpi crate's mapping; each use has a SAFETY note"
)]

use crate::madt::{Identity, Rsdp, Window};
use acpi::mcfg::Mcfg;
use acpi::{AcpiTable, AcpiTables};

/// One ECAM window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcamWindow {
    /// Physical address of bus `start_bus`'s configuration space.
    pub base: u64,
    /// PCI segment group.
    pub segment: u16,
    /// First bus decoded.
    pub start_bus: u8,
    /// Last bus decoded.
    pub end_bus: u8,
}

impl EcamWindow {
    /// Bytes of the window (1 MiB per bus).
    pub fn len(&self) -> u64 {
        (u64::from(self.end_bus - self.start_bus) + 1) << 20
    }

    /// Never empty: `start_bus <= end_bus` is checked when parsed.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The most windows kept (QEMU has one).
pub const MAX_WINDOWS: usize = 4;

/// What the MCFG says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct McfgInfo {
    windows: [EcamWindow; MAX_WINDOWS],
    count: usize,
}

impl McfgInfo {
    /// The windows, in table order.
    pub fn windows(&self) -> &[EcamWindow] {
        &self.windows[..self.count]
    }

    /// Segment 0's window (the only segment Rhea uses).
    pub fn segment0(&self) -> Option<EcamWindow> {
        self.windows().iter().copied().find(|w| w.segment == 0)
    }
}

/// Why the MCFG cannot be used.
#[derive(Debug)]
pub enum McfgError {
    /// No MCFG (or no usable RSDP/root table): the `acpi` crate's verdict.
    Acpi(acpi::AcpiError),
    /// The length is below the 44-byte fixed part or not a whole number of 16-byte entries.
    BadLength(u32),
    /// No entries.
    Empty,
    /// More windows than [`MAX_WINDOWS`].
    TooMany(usize),
    /// An entry is unusable (named by index, with the reason).
    BadEntry(usize, &'static str),
}

impl McfgError {
    /// Whether the table simply does not exist (a machine without PCI Express, like microvm).
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::Acpi(acpi::AcpiError::TableMissing(_)))
    }
}

impl core::fmt::Display for McfgError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Acpi(e) => write!(f, "ACPI tables: {}", crate::madt::AcpiErrorText(e)),
            Self::BadLength(l) => write!(
                f,
                "MCFG length {l} is not its 44-byte header plus whole 16-byte entries"
            ),
            Self::Empty => f.write_str("MCFG lists no ECAM window"),
            Self::TooMany(n) => write!(f, "MCFG lists {n} windows, more than {MAX_WINDOWS}"),
            Self::BadEntry(i, why) => write!(f, "MCFG entry {i}: {why}"),
        }
    }
}

/// The fixed part: SDT header (36) and 8 reserved bytes.
const HEADER_LEN: usize = 44;
const ENTRY_LEN: usize = 16;

/// Parses an MCFG's bytes (the whole table, `length` bytes).
pub fn parse(table: &[u8]) -> Result<McfgInfo, McfgError> {
    let length = table
        .get(4..8)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let len = length as usize;
    if len < HEADER_LEN || !(len - HEADER_LEN).is_multiple_of(ENTRY_LEN) || len > table.len() {
        return Err(McfgError::BadLength(length));
    }
    let n = (len - HEADER_LEN) / ENTRY_LEN;
    if n == 0 {
        return Err(McfgError::Empty);
    }
    if n > MAX_WINDOWS {
        return Err(McfgError::TooMany(n));
    }
    let blank = EcamWindow {
        base: 0,
        segment: 0,
        start_bus: 0,
        end_bus: 0,
    };
    let mut info = McfgInfo {
        windows: [blank; MAX_WINDOWS],
        count: 0,
    };
    for i in 0..n {
        let e = &table[HEADER_LEN + i * ENTRY_LEN..][..ENTRY_LEN];
        let mut base = [0; 8];
        base.copy_from_slice(&e[..8]);
        let w = EcamWindow {
            base: u64::from_le_bytes(base),
            segment: u16::from_le_bytes([e[8], e[9]]),
            start_bus: e[10],
            end_bus: e[11],
        };
        if w.base == 0 || w.base & 0xf_ffff != 0 {
            return Err(McfgError::BadEntry(
                i,
                "base address zero or not 1 MiB aligned",
            ));
        }
        if w.start_bus > w.end_bus {
            return Err(McfgError::BadEntry(i, "start bus above end bus"));
        }
        if w.base.checked_add(w.len()).is_none_or(|end| end > 1 << 52) {
            return Err(McfgError::BadEntry(
                i,
                "window beyond the physical address space",
            ));
        }
        if info.windows().iter().any(|o| o.segment == w.segment) {
            return Err(McfgError::BadEntry(i, "second window for the same segment"));
        }
        info.windows[i] = w;
        info.count += 1;
    }
    Ok(info)
}

/// Finds and parses the MCFG.
///
/// # Safety
/// As for [`crate::madt::read`]: every address in `window` is readable (1:1) during the call.
pub unsafe fn read(rsdp: Rsdp, window: Window) -> Result<McfgInfo, McfgError> {
    let handler = Identity(window);
    // SAFETY: forwarded: the handler only hands out mappings inside the caller's window.
    let tables = unsafe {
        match rsdp {
            Rsdp::At(address) => AcpiTables::from_rsdp(handler, address),
            Rsdp::SearchBios => AcpiTables::search_for_rsdp_bios(handler),
        }
    }
    .map_err(McfgError::Acpi)?;
    let mcfg = tables.find_table::<Mcfg>().map_err(McfgError::Acpi)?;
    let length = { mcfg.get().header().length } as usize;
    if length > mcfg.region_length() {
        return Err(McfgError::BadLength(length as u32));
    }
    // SAFETY: the mapping covers `region_length` bytes from its start (the handler checked them
    // against the window) and `length` is within it.
    let bytes =
        unsafe { core::slice::from_raw_parts(mcfg.virtual_start().as_ptr().cast::<u8>(), length) };
    parse(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec::Vec;

    fn table(entries: &[(u64, u16, u8, u8)]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(b"MCFG");
        let len = (HEADER_LEN + entries.len() * ENTRY_LEN) as u32;
        t.extend_from_slice(&len.to_le_bytes());
        t.resize(HEADER_LEN, 0);
        for &(base, seg, start, end) in entries {
            t.extend_from_slice(&base.to_le_bytes());
            t.extend_from_slice(&seg.to_le_bytes());
            t.extend_from_slice(&[start, end, 0, 0, 0, 0]);
        }
        t
    }

    #[test]
    fn qemu_q35() {
        let info = parse(&table(&[(0xb000_0000, 0, 0, 0xff)])).unwrap();
        let w = info.segment0().unwrap();
        assert_eq!(
            (w.base, w.start_bus, w.end_bus, w.len()),
            (0xb000_0000, 0, 255, 256 << 20)
        );
    }

    #[test]
    fn malformed_tables_are_refused() {
        let short = &table(&[])[..40];
        assert!(matches!(parse(short), Err(McfgError::BadLength(_))));
        let mut ragged = table(&[(0xb000_0000, 0, 0, 0xff)]);
        ragged[4] = 50;
        assert!(matches!(parse(&ragged), Err(McfgError::BadLength(50))));
        let mut long = table(&[(0xb000_0000, 0, 0, 0xff)]);
        long[4] = 76;
        assert!(
            matches!(parse(&long), Err(McfgError::BadLength(76))),
            "length past the bytes"
        );
        assert!(matches!(parse(&table(&[])), Err(McfgError::Empty)));
        for (entry, why) in [
            ((0, 0, 0, 0xff), "zero"),
            ((0xb000_1000, 0, 0, 0xff), "aligned"),
            ((0xb000_0000, 0, 5, 4), "start bus"),
            ((0xffff_ffff_fff0_0000, 0, 0, 0xff), "beyond"),
        ] {
            let e = parse(&table(&[entry])).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
        let dup = table(&[(0xb000_0000, 0, 0, 0x7f), (0xc000_0000, 0, 0x80, 0xff)]);
        assert!(
            parse(&dup)
                .unwrap_err()
                .to_string()
                .contains("same segment")
        );
        let many = table(&[
            (1 << 20, 0, 0, 0),
            (2 << 20, 1, 0, 0),
            (3 << 20, 2, 0, 0),
            (4 << 20, 3, 0, 0),
            (5 << 20, 4, 0, 0),
        ]);
        assert!(matches!(parse(&many), Err(McfgError::TooMany(5))));
    }
}
