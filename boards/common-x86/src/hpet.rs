//! The HPET as a frequency reference: its ACPI description table (IA-PC HPET Specification
//! 1.0a §3.2.4, "The ACPI 2.0 HPET Description Table") and the registers that matter for
//! timing (§2.3): the general capabilities, the configuration's ENABLE_CNF and the main
//! counter. No comparator is programmed and no interrupt enabled.
//!
//! **The table** is found by the `acpi` crate (signature and checksum; a table failing them is
//! "missing" to it) and parsed here from its bytes — the crate's `HpetInfo` panics on a base
//! address outside system memory — in two steps: [`parse_table`] checks length, signature,
//! checksum and the base address's generic address structure before anything is read from
//! it.
//!
//! **The device** ([`Hpet`]) is checked before use: COUNTER_CLK_PERIOD must be non-zero and at
//! most 100 ns (§2.3.4: "must be less than or equal to 0x05F5E100"), which also refuses an
//! address nothing decodes (it reads all ones). The main counter may be halted
//! (ENABLE_CNF clear: firmware need not start it); [`ReferenceCounter::start`] sets the bit and
//! leaves the counter running. Only the counter's low 32 bits are read — a single 32-bit
//! load, never torn — and its wrap (42.9 s at QEMU's 100 MHz, 5 minutes at a PC's 14.318 MHz)
//! is handled by the calibration, so 32-bit and 64-bit counters (COUNT_SIZE_CAP) are read the
//! same way.
#![allow(
    unsafe_code,
    reason = "reading the table in place through the acpi crate's mapping; it has a SAFETY note"
)]

use crate::access::Mmio32;
use crate::calibrate::{Rate, Reference, ReferenceCounter};
use crate::madt::{Identity, Rsdp, Window};
use core::fmt;

/// Register offsets in the HPET's 1 KiB block (IA-PC HPET 1.0a §2.3.1, Table 2).
mod reg {
    /// General Capabilities and ID, bits 31:0.
    pub(super) const CAPABILITIES_LOW: usize = 0x000;
    /// General Capabilities and ID, bits 63:32: COUNTER_CLK_PERIOD.
    pub(super) const CAPABILITIES_HIGH: usize = 0x004;
    /// General Configuration, bits 31:0.
    pub(super) const CONFIGURATION: usize = 0x010;
    /// Main Counter Value, bits 31:0.
    pub(super) const MAIN_COUNTER_LOW: usize = 0x0f0;
}

/// Capabilities: COUNT_SIZE_CAP, the main counter is 64 bits wide.
const CAP_COUNT_SIZE_64: u32 = 1 << 13;
/// Configuration: ENABLE_CNF, the main counter runs.
const CNF_ENABLE: u32 = 1 << 0;

/// The longest period the specification allows: 100 ns (§2.3.4).
pub const MAX_PERIOD_FS: u32 = 0x05f5_e100;

/// Bytes of the register block.
pub const BLOCK_LEN: u64 = 0x400;

/// The table's length: the SDT header (36), the event timer block ID (4), the base address
/// (a 12-byte generic address structure), the HPET number, the minimum clock tick (2) and the
/// page protection byte.
pub const TABLE_LEN: usize = 56;

/// What the ACPI HPET table says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HpetTable {
    /// Physical address of the register block.
    pub base: u64,
    /// The event timer block ID: the capabilities register's low half, as firmware copied it.
    pub block_id: u32,
    /// Which HPET of the machine this is (0 for the first).
    pub number: u8,
}

/// Why the HPET table cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HpetTableError {
    /// No usable RSDP or root table.
    NoAcpi,
    /// No HPET table (or one that failed the `acpi` crate's signature and checksum checks).
    Missing,
    /// The length is below the table's 56 bytes or past the bytes mapped.
    BadLength(u32),
    /// Not an HPET table.
    BadSignature,
    /// The bytes do not sum to zero.
    BadChecksum,
    /// The base address is not in system memory (address space ID 0).
    NotMemorySpace(u8),
    /// The base address is zero, not 8-byte aligned, or its block crosses a page or leaves the
    /// physical address space.
    BadBase(u64),
}

impl HpetTableError {
    /// Whether the machine simply has no HPET (not a malformed table).
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::NoAcpi | Self::Missing)
    }
}

impl fmt::Display for HpetTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoAcpi => f.write_str("no usable ACPI tables"),
            Self::Missing => f.write_str("no ACPI HPET table"),
            Self::BadLength(l) => write!(f, "HPET table length {l}, expected {TABLE_LEN}"),
            Self::BadSignature => f.write_str("not an HPET table"),
            Self::BadChecksum => f.write_str("HPET table checksum does not sum to zero"),
            Self::NotMemorySpace(id) => write!(
                f,
                "HPET base address in address space {id}, not system memory (0)"
            ),
            Self::BadBase(b) => write!(
                f,
                "HPET base address {b:#x} is zero, unaligned, or its 1 KiB block crosses a page"
            ),
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | (u64::from(u32_at(b, at + 4)) << 32)
}

/// Whether the first `len` bytes sum to zero (ACPI 6.5 §5.2.6).
pub(crate) fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b)) == 0
}

/// Parses an HPET table's bytes (at least its `length` of them).
pub fn parse_table(bytes: &[u8]) -> Result<HpetTable, HpetTableError> {
    let length = if bytes.len() >= 8 {
        u32_at(bytes, 4)
    } else {
        0
    };
    let len = length as usize;
    if len < TABLE_LEN || len > bytes.len() {
        return Err(HpetTableError::BadLength(length));
    }
    let t = &bytes[..len];
    if &t[..4] != b"HPET" {
        return Err(HpetTableError::BadSignature);
    }
    if !checksum_ok(t) {
        return Err(HpetTableError::BadChecksum);
    }
    // The base address: a generic address structure at 40 (ACPI 6.5 §5.2.3.2): address space
    // ID, register bit width, bit offset, access size, 64-bit address.
    let space = t[40];
    if space != 0 {
        return Err(HpetTableError::NotMemorySpace(space));
    }
    let base = u64_at(t, 44);
    let in_one_page = (base & 0xfff) + BLOCK_LEN <= 0x1000;
    if base == 0 || !base.is_multiple_of(8) || !in_one_page || base >= 1 << 52 {
        return Err(HpetTableError::BadBase(base));
    }
    Ok(HpetTable {
        base,
        block_id: u32_at(t, 36),
        number: t[52],
    })
}

/// Finds and parses the HPET table.
///
/// # Safety
/// As for [`crate::madt::read`]: every address in `window` is readable (1:1) during the call.
pub unsafe fn read(rsdp: Rsdp, window: Window) -> Result<HpetTable, HpetTableError> {
    // SAFETY: forwarded: the handler only hands out mappings inside the caller's window.
    let tables = unsafe { crate::madt::tables(Identity(window), rsdp) }
        .map_err(|_| HpetTableError::NoAcpi)?;
    let table = tables
        .find_table::<acpi::hpet::HpetTable>()
        .map_err(|_| HpetTableError::Missing)?;
    let bytes = crate::madt::table_bytes(&table).ok_or(HpetTableError::BadLength(0))?;
    parse_table(bytes)
}

/// Why the HPET's registers cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HpetError {
    /// COUNTER_CLK_PERIOD is zero or above 100 ns (all ones: nothing at the address).
    BadPeriod(u32),
}

impl fmt::Display for HpetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadPeriod(fs) => write!(
                f,
                "HPET states a counter period of {fs} fs (must be 1 to {MAX_PERIOD_FS})"
            ),
        }
    }
}

/// An HPET whose capabilities were checked.
#[derive(Debug)]
pub struct Hpet<M: Mmio32> {
    regs: M,
    period_fs: u32,
    capabilities_low: u32,
}

impl<M: Mmio32> Hpet<M> {
    /// Reads and checks the capabilities. Touches nothing else.
    pub fn new(regs: M) -> Result<Hpet<M>, HpetError> {
        let period_fs = regs.read32(reg::CAPABILITIES_HIGH);
        if period_fs == 0 || period_fs > MAX_PERIOD_FS {
            return Err(HpetError::BadPeriod(period_fs));
        }
        let capabilities_low = regs.read32(reg::CAPABILITIES_LOW);
        Ok(Hpet {
            regs,
            period_fs,
            capabilities_low,
        })
    }

    /// COUNTER_CLK_PERIOD, femtoseconds per tick.
    pub fn period_fs(&self) -> u32 {
        self.period_fs
    }

    /// Whether the main counter is 64 bits wide (COUNT_SIZE_CAP).
    pub fn is_64bit(&self) -> bool {
        self.capabilities_low & CAP_COUNT_SIZE_64 != 0
    }

    /// How many comparators it has (NUM_TIM_CAP + 1).
    pub fn timers(&self) -> u8 {
        ((self.capabilities_low >> 8) & 0x1f) as u8 + 1
    }

    /// Whether the main counter runs now (ENABLE_CNF). Touches hardware.
    pub fn read_is_enabled(&self) -> bool {
        self.regs.read32(reg::CONFIGURATION) & CNF_ENABLE != 0
    }
}

impl<M: Mmio32> ReferenceCounter for Hpet<M> {
    fn start(&self) {
        let config = self.regs.read32(reg::CONFIGURATION);
        if config & CNF_ENABLE == 0 {
            // Only ENABLE_CNF changes; LEG_RT_CNF and the reserved bits are written back as read.
            self.regs.write32(reg::CONFIGURATION, config | CNF_ENABLE);
        }
    }

    fn read_count(&self) -> u64 {
        u64::from(self.regs.read32(reg::MAIN_COUNTER_LOW))
    }

    fn width_bits(&self) -> u32 {
        32
    }

    fn rate(&self) -> Rate {
        Rate::from_period_fs(u64::from(self.period_fs)).expect("the period was checked non-zero")
    }

    fn reference(&self) -> Reference {
        Reference::Hpet
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HpetModel, Machine, Wiring};
    use std::vec::Vec;

    /// An HPET table as QEMU builds it, with a valid checksum.
    fn table(space: u8, base: u64) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(b"HPET");
        t.extend_from_slice(&(TABLE_LEN as u32).to_le_bytes());
        t.push(1);
        t.push(0);
        t.extend_from_slice(b"RHEA  RHEATEST");
        t.extend_from_slice(&[1, 0, 0, 0]);
        t.extend_from_slice(b"RHEA");
        t.extend_from_slice(&[1, 0, 0, 0]);
        t.extend_from_slice(&0x8086_a201u32.to_le_bytes());
        t.extend_from_slice(&[space, 0, 0, 0]);
        t.extend_from_slice(&base.to_le_bytes());
        t.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(t.len(), TABLE_LEN);
        fix_checksum(&mut t);
        t
    }

    fn fix_checksum(t: &mut [u8]) {
        t[9] = 0;
        t[9] = t.iter().fold(0u8, |s, b| s.wrapping_add(*b)).wrapping_neg();
    }

    #[test]
    fn qemu_table() {
        let h = parse_table(&table(0, 0xfed0_0000)).unwrap();
        assert_eq!(
            h,
            HpetTable {
                base: 0xfed0_0000,
                block_id: 0x8086_a201,
                number: 0
            }
        );
    }

    #[test]
    fn malformed_tables_are_refused() {
        let good = table(0, 0xfed0_0000);
        assert_eq!(parse_table(&good[..40]), Err(HpetTableError::BadLength(56)));
        assert_eq!(parse_table(&good[..6]), Err(HpetTableError::BadLength(0)));
        let mut short = good.clone();
        short[4] = 52;
        fix_checksum(&mut short);
        assert_eq!(parse_table(&short), Err(HpetTableError::BadLength(52)));
        let mut sum = good.clone();
        sum[50] ^= 1;
        assert_eq!(parse_table(&sum), Err(HpetTableError::BadChecksum));
        let mut sig = good.clone();
        sig[0] = b'X';
        fix_checksum(&mut sig);
        assert_eq!(parse_table(&sig), Err(HpetTableError::BadSignature));
        assert_eq!(
            parse_table(&table(1, 0xfed0_0000)),
            Err(HpetTableError::NotMemorySpace(1))
        );
        for base in [0, 0xfed0_0004, 0xfed0_0c08, 1 << 52] {
            assert_eq!(
                parse_table(&table(0, base)),
                Err(HpetTableError::BadBase(base))
            );
        }
        // A longer table (a later revision) is fine.
        let mut long = good.clone();
        long.extend_from_slice(&[0; 8]);
        long[4] = 64;
        fix_checksum(&mut long);
        assert!(parse_table(&long).is_ok());
    }

    #[test]
    fn capabilities_are_checked() {
        for period in [0, MAX_PERIOD_FS + 1, u32::MAX] {
            let m = Machine::new(2_000_000_000, Wiring::Pc).with_hpet(HpetModel {
                period_fs: period,
                ..HpetModel::qemu(0)
            });
            assert_eq!(Hpet::new(&m).err(), Some(HpetError::BadPeriod(period)));
        }
        // Nothing behind the address: reads all ones.
        let m = Machine::new(2_000_000_000, Wiring::Pc);
        assert_eq!(Hpet::new(&m).err(), Some(HpetError::BadPeriod(u32::MAX)));
        let m = Machine::new(2_000_000_000, Wiring::Pc).with_hpet(HpetModel {
            period_fs: MAX_PERIOD_FS,
            caps_low: 0x8086_0201,
            ..HpetModel::qemu(0)
        });
        let h = Hpet::new(&m).unwrap();
        assert_eq!(
            (h.period_fs(), h.is_64bit(), h.timers()),
            (MAX_PERIOD_FS, false, 3)
        );
        assert_eq!(h.rate().hz(), 10_000_000);
    }

    #[test]
    fn start_enables_a_halted_counter_once() {
        let m = Machine::new(2_000_000_000, Wiring::Pc).with_hpet(HpetModel::qemu(5));
        let h = Hpet::new(&m).unwrap();
        assert!(!h.read_is_enabled());
        let before = h.read_count();
        assert_eq!(h.read_count(), before, "halted");
        h.start();
        assert!(h.read_is_enabled());
        let a = h.read_count();
        let b = h.read_count();
        assert!(b > a, "{a} {b}");
        let writes = m.with(|s| s.mmio_accesses);
        h.start();
        assert_eq!(m.with(|s| s.mmio_accesses), writes + 1, "read, not written");
    }

    /// An RSDP (v2) at 0, an XSDT at 64 listing `tables`, which follow it, in one buffer that
    /// never moves (the tables are read in place at their host addresses).
    struct Firmware(Vec<u8>);

    impl Firmware {
        fn new(tables: &[Vec<u8>]) -> Firmware {
            const XSDT_AT: usize = 64;
            let first = XSDT_AT + 36 + 8 * tables.len();
            // Readable memory after the tables, as on a machine: the `acpi` crate maps a whole
            // FADT structure (276 bytes) even for a shorter table.
            let total = first + tables.iter().map(Vec::len).sum::<usize>() + 512;
            let mut buf = std::vec![0u8; total];
            let base = buf.as_ptr() as u64;
            let mut at = first;
            let mut xsdt = Vec::new();
            xsdt.extend_from_slice(b"XSDT");
            xsdt.extend_from_slice(&((36 + 8 * tables.len()) as u32).to_le_bytes());
            xsdt.extend_from_slice(&[1, 0]);
            xsdt.extend_from_slice(b"RHEA  RHEATEST");
            xsdt.extend_from_slice(&[1, 0, 0, 0]);
            xsdt.extend_from_slice(b"RHEA");
            xsdt.extend_from_slice(&[1, 0, 0, 0]);
            for t in tables {
                xsdt.extend_from_slice(&(base + at as u64).to_le_bytes());
                buf[at..at + t.len()].copy_from_slice(t);
                at += t.len();
            }
            fix_checksum(&mut xsdt);
            buf[XSDT_AT..XSDT_AT + xsdt.len()].copy_from_slice(&xsdt);
            let mut rsdp = Vec::new();
            rsdp.extend_from_slice(b"RSD PTR ");
            rsdp.push(0);
            rsdp.extend_from_slice(b"RHEA  ");
            rsdp.push(2);
            rsdp.extend_from_slice(&0u32.to_le_bytes());
            rsdp.extend_from_slice(&36u32.to_le_bytes());
            rsdp.extend_from_slice(&(base + XSDT_AT as u64).to_le_bytes());
            rsdp.extend_from_slice(&[0, 0, 0, 0]);
            let sum = |b: &[u8]| b.iter().fold(0u8, |s, x| s.wrapping_add(*x)).wrapping_neg();
            rsdp[8] = sum(&rsdp[..20]);
            rsdp[32] = sum(&rsdp[..36]);
            buf[..36].copy_from_slice(&rsdp);
            Firmware(buf)
        }

        fn window(&self) -> (Rsdp, Window) {
            let start = self.0.as_ptr() as usize;
            (
                Rsdp::At(start),
                Window {
                    start,
                    end: start + self.0.len(),
                },
            )
        }

        fn hpet(&self) -> Result<HpetTable, HpetTableError> {
            let (rsdp, window) = self.window();
            // SAFETY: the window is this live buffer.
            unsafe { read(rsdp, window) }
        }

        fn pm_timer(&self) -> Result<crate::pm_timer::PmTimerPort, crate::pm_timer::PmTimerError> {
            let (rsdp, window) = self.window();
            // SAFETY: the window is this live buffer.
            unsafe { crate::pm_timer::read(rsdp, window) }
        }
    }

    #[test]
    fn found_through_the_rsdp_like_the_madt() {
        use crate::pm_timer::tests::fadt;
        use crate::pm_timer::{PmTimerError, PmTimerPort};
        let q35_fadt = fadt(276, (0x608, 4), 0, Some((1, 32, 0x608)));
        let fw = Firmware::new(&[q35_fadt.clone(), table(0, 0xfed0_0000)]);
        assert_eq!(fw.hpet().map(|t| t.base), Ok(0xfed0_0000));
        assert_eq!(
            fw.pm_timer(),
            Ok(PmTimerPort {
                port: 0x608,
                bits: 24,
                extended: true
            })
        );
        // microvm: a hardware-reduced FADT and no HPET table.
        let microvm_fadt = fadt(276, (0, 0), 1 << 20, None);
        let fw = Firmware::new(&[microvm_fadt]);
        assert_eq!(fw.hpet(), Err(HpetTableError::Missing));
        assert!(fw.hpet().unwrap_err().is_missing());
        assert_eq!(fw.pm_timer(), Err(PmTimerError::HardwareReduced));
        // A bad checksum: the `acpi` crate passes over the table, so it is missing.
        let mut bad = table(0, 0xfed0_0000);
        bad[20] ^= 1;
        let mut bad_fadt = q35_fadt.clone();
        bad_fadt[100] ^= 1;
        let fw = Firmware::new(&[bad_fadt, bad]);
        assert_eq!(fw.hpet(), Err(HpetTableError::Missing));
        assert_eq!(fw.pm_timer(), Err(PmTimerError::NoFadt));
        // Truncated (a length below the fixed part, checksum right): refused by length, read
        // only within the window.
        let mut short = table(0, 0xfed0_0000);
        short.truncate(48);
        short[4] = 48;
        fix_checksum(&mut short);
        let mut short_fadt = q35_fadt;
        short_fadt.truncate(100);
        short_fadt[4..8].copy_from_slice(&100u32.to_le_bytes());
        crate::pm_timer::tests::fix_checksum(&mut short_fadt);
        let fw = Firmware::new(&[short_fadt, short]);
        assert_eq!(fw.hpet(), Err(HpetTableError::BadLength(48)));
        assert_eq!(fw.pm_timer(), Err(PmTimerError::BadLength(100)));
        // No RSDP at all.
        let mut fw = Firmware::new(&[]);
        fw.0[0] = b'X';
        assert_eq!(fw.hpet(), Err(HpetTableError::NoAcpi));
        assert_eq!(fw.pm_timer(), Err(PmTimerError::NoAcpi));
    }
}
