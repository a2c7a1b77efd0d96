//! The ACPI power-management timer as a frequency reference (ACPI 6.5 §4.8.3.3, "PM Timer"):
//! a free-running up-counter at 3.579545 MHz, 24 bits wide, or 32 bits when the FADT's flag
//! TMR_VAL_EXT says so, read with one 32-bit `in` at the port the FADT names.
//!
//! **The FADT** (ACPI 6.5 §5.2.9, Table 5.9) is found by the `acpi` crate (signature and
//! checksum) and parsed here from its bytes ([`parse_fadt`]), reading only the fields that
//! locate the timer, each only if the table's length covers it (an ACPI 1.0 FADT is 116
//! bytes, a current one 276):
//! - `X_PM_TMR_BLK` (offset 208), a generic address structure, when it is a valid system-I/O
//!   address (address space 1, a 16-bit port, bit offset 0, width 24 or 32 or unstated);
//! - else `PM_TMR_BLK` (offset 76), an I/O port, with `PM_TMR_LEN` (offset 91) 4;
//! - `Flags` (offset 112): TMR_VAL_EXT (bit 8) the width; HW_REDUCED_ACPI (bit 20) means there
//!   is no fixed-hardware PM timer at all (QEMU microvm).
//!
//! An extended address in memory space is not used (this crate reads the timer only through
//! ports): the legacy port is used instead if there is one, else the timer is refused.
#![allow(
    unsafe_code,
    reason = "reading the table in place through the acpi crate's mapping; it has a SAFETY note"
)]

use crate::calibrate::{Rate, Reference, ReferenceCounter};
use crate::madt::{Identity, Rsdp, Window};
use crate::pit::PortIo;
use core::fmt;

/// The timer's rate (ACPI 6.5 §4.8.3.3).
pub const PM_TIMER_HZ: u64 = 3_579_545;

/// FADT offsets (ACPI 6.5 Table 5.9).
mod offset {
    pub(super) const PM_TMR_BLK: usize = 76;
    pub(super) const PM_TMR_LEN: usize = 91;
    pub(super) const FLAGS: usize = 112;
    pub(super) const X_PM_TMR_BLK: usize = 208;
}

/// The FADT up to and including `Flags`: the ACPI 1.0 table.
pub const MIN_FADT_LEN: usize = 116;
/// The FADT up to and including `X_PM_TMR_BLK`.
const X_PM_TMR_BLK_END: usize = offset::X_PM_TMR_BLK + 12;

/// Flags: TMR_VAL_EXT, the timer's value is 32 bits.
const FLAG_TMR_VAL_EXT: u32 = 1 << 8;
/// Flags: HW_REDUCED_ACPI, no fixed ACPI hardware (no PM timer).
const FLAG_HW_REDUCED_ACPI: u32 = 1 << 20;

/// Generic address structure: system I/O space.
const SPACE_SYSTEM_IO: u8 = 1;

/// Where the timer is and how wide it counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmTimerPort {
    /// The I/O port to read.
    pub port: u16,
    /// 24 or 32.
    pub bits: u32,
    /// Whether `port` came from `X_PM_TMR_BLK` (else `PM_TMR_BLK`).
    pub extended: bool,
}

/// Why there is no usable PM timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmTimerError {
    /// No usable RSDP or root table.
    NoAcpi,
    /// No FADT (or one that failed the `acpi` crate's signature and checksum checks).
    NoFadt,
    /// The FADT's length is below its ACPI 1.0 size or past the bytes mapped.
    BadLength(u32),
    /// Not a FADT.
    BadSignature,
    /// The bytes do not sum to zero.
    BadChecksum,
    /// HW_REDUCED_ACPI: the machine has no fixed ACPI hardware.
    HardwareReduced,
    /// Neither address is set (the timer is optional since ACPI 5.0).
    NotPresent,
    /// `X_PM_TMR_BLK` is outside system I/O space (this address space ID), and there is no
    /// `PM_TMR_BLK`.
    NotSystemIo(u8),
    /// `X_PM_TMR_BLK` is in I/O space but unusable (a port beyond 0xfffc, a bit offset, a width
    /// other than 24 or 32), and there is no `PM_TMR_BLK`.
    BadAddress(u64),
    /// `PM_TMR_BLK` is set with a length other than 4, or beyond port 0xfffc.
    BadLegacyBlock {
        /// `PM_TMR_BLK`.
        port: u32,
        /// `PM_TMR_LEN`.
        len: u8,
    },
}

impl PmTimerError {
    /// Whether the machine simply has no PM timer (not a malformed table).
    pub fn is_missing(&self) -> bool {
        matches!(
            self,
            Self::NoAcpi | Self::NoFadt | Self::HardwareReduced | Self::NotPresent
        )
    }
}

impl fmt::Display for PmTimerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoAcpi => f.write_str("no usable ACPI tables"),
            Self::NoFadt => f.write_str("no ACPI FADT"),
            Self::BadLength(l) => {
                write!(
                    f,
                    "FADT length {l} is below its {MIN_FADT_LEN}-byte minimum"
                )
            }
            Self::BadSignature => f.write_str("not a FADT"),
            Self::BadChecksum => f.write_str("FADT checksum does not sum to zero"),
            Self::HardwareReduced => {
                f.write_str("hardware-reduced ACPI: the FADT sets HW_REDUCED_ACPI")
            }
            Self::NotPresent => f.write_str("the FADT describes no PM timer"),
            Self::NotSystemIo(space) => write!(
                f,
                "the FADT's X_PM_TMR_BLK is in address space {space}, not system I/O, and PM_TMR_BLK is 0"
            ),
            Self::BadAddress(a) => write!(
                f,
                "the FADT's X_PM_TMR_BLK (I/O address {a:#x}) is unusable, and PM_TMR_BLK is 0"
            ),
            Self::BadLegacyBlock { port, len } => write!(
                f,
                "the FADT's PM_TMR_BLK {port:#x} with PM_TMR_LEN {len} (must be 4, below port 0xfffd)"
            ),
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A generic address structure (ACPI 6.5 §5.2.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Gas {
    space: u8,
    bit_width: u8,
    bit_offset: u8,
    address: u64,
}

impl Gas {
    fn at(b: &[u8], at: usize) -> Gas {
        Gas {
            space: b[at],
            bit_width: b[at + 1],
            bit_offset: b[at + 2],
            address: u64::from(u32_at(b, at + 4)) | (u64::from(u32_at(b, at + 8)) << 32),
        }
    }

    /// The port, if this is a PM timer this crate can read: system I/O, a 32-bit read fits
    /// below 0x10000, no bit offset, 24 or 32 bits (or 0: unstated, as some firmware leaves it).
    fn timer_port(&self) -> Option<u16> {
        let fits = self.address <= 0xfffc;
        let width_ok = matches!(self.bit_width, 0 | 24 | 32);
        (self.space == SPACE_SYSTEM_IO && fits && self.bit_offset == 0 && width_ok)
            .then_some(self.address as u16)
    }
}

/// Finds the PM timer in a FADT's bytes (at least its `length` of them).
pub fn parse_fadt(bytes: &[u8]) -> Result<PmTimerPort, PmTimerError> {
    let length = if bytes.len() >= 8 {
        u32_at(bytes, 4)
    } else {
        0
    };
    let len = length as usize;
    if len < MIN_FADT_LEN || len > bytes.len() {
        return Err(PmTimerError::BadLength(length));
    }
    let t = &bytes[..len];
    if &t[..4] != b"FACP" {
        return Err(PmTimerError::BadSignature);
    }
    if !crate::hpet::checksum_ok(t) {
        return Err(PmTimerError::BadChecksum);
    }
    let flags = u32_at(t, offset::FLAGS);
    if flags & FLAG_HW_REDUCED_ACPI != 0 {
        return Err(PmTimerError::HardwareReduced);
    }
    let bits = if flags & FLAG_TMR_VAL_EXT != 0 {
        32
    } else {
        24
    };
    let extended = (len >= X_PM_TMR_BLK_END)
        .then(|| Gas::at(t, offset::X_PM_TMR_BLK))
        .filter(|g| g.address != 0);
    if let Some(port) = extended.and_then(|g| g.timer_port()) {
        return Ok(PmTimerPort {
            port,
            bits,
            extended: true,
        });
    }
    let legacy = u32_at(t, offset::PM_TMR_BLK);
    let legacy_len = t[offset::PM_TMR_LEN];
    match (legacy, extended) {
        (0, None) => Err(PmTimerError::NotPresent),
        (0, Some(g)) if g.space != SPACE_SYSTEM_IO => Err(PmTimerError::NotSystemIo(g.space)),
        (0, Some(g)) => Err(PmTimerError::BadAddress(g.address)),
        (port, _) if legacy_len != 4 || port > 0xfffc => Err(PmTimerError::BadLegacyBlock {
            port,
            len: legacy_len,
        }),
        (port, _) => Ok(PmTimerPort {
            port: port as u16,
            bits,
            extended: false,
        }),
    }
}

/// Finds the FADT and the PM timer in it.
///
/// # Safety
/// As for [`crate::madt::read`]: every address in `window` is readable (1:1) during the call.
pub unsafe fn read(rsdp: Rsdp, window: Window) -> Result<PmTimerPort, PmTimerError> {
    // SAFETY: forwarded: the handler only hands out mappings inside the caller's window.
    let tables =
        unsafe { crate::madt::tables(Identity(window), rsdp) }.map_err(|_| PmTimerError::NoAcpi)?;
    let fadt = tables
        .find_table::<acpi::fadt::Fadt>()
        .map_err(|_| PmTimerError::NoFadt)?;
    let bytes = crate::madt::table_bytes(&fadt).ok_or(PmTimerError::BadLength(0))?;
    parse_fadt(bytes)
}

/// The PM timer at a port the FADT gave.
#[derive(Debug)]
pub struct PmTimer<P: PortIo> {
    io: P,
    at: PmTimerPort,
}

impl<P: PortIo> PmTimer<P> {
    /// The timer described by `at`, read through `io`.
    pub fn new(io: P, at: PmTimerPort) -> PmTimer<P> {
        PmTimer { io, at }
    }

    /// Where it is.
    pub fn port(&self) -> PmTimerPort {
        self.at
    }
}

impl<P: PortIo> ReferenceCounter for PmTimer<P> {
    fn start(&self) {
        // It always runs (ACPI 6.5 §4.8.3.3: "runs off a 3.579545-MHz clock ... in all of the
        // non-sleeping states").
    }

    fn read_count(&self) -> u64 {
        u64::from(self.io.inl(self.at.port))
    }

    fn width_bits(&self) -> u32 {
        self.at.bits
    }

    fn rate(&self) -> Rate {
        Rate::from_hz(PM_TIMER_HZ).expect("a non-zero constant")
    }

    fn reference(&self) -> Reference {
        Reference::PmTimer
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::vec::Vec;

    /// A FADT of `len` bytes (116 or 276) with the given timer fields and a valid checksum.
    pub(crate) fn fadt(
        len: usize,
        legacy: (u32, u8),
        flags: u32,
        x: Option<(u8, u8, u64)>,
    ) -> Vec<u8> {
        let mut t = std::vec![0u8; len];
        t[..4].copy_from_slice(b"FACP");
        t[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        t[8] = if len >= X_PM_TMR_BLK_END { 6 } else { 1 };
        t[10..16].copy_from_slice(b"RHEA  ");
        t[16..24].copy_from_slice(b"RHEATEST");
        t[offset::PM_TMR_BLK..][..4].copy_from_slice(&legacy.0.to_le_bytes());
        t[offset::PM_TMR_LEN] = legacy.1;
        t[offset::FLAGS..][..4].copy_from_slice(&flags.to_le_bytes());
        if let Some((space, width, address)) = x {
            let g = &mut t[offset::X_PM_TMR_BLK..][..12];
            g[0] = space;
            g[1] = width;
            g[3] = 3; // dword access
            g[4..12].copy_from_slice(&address.to_le_bytes());
        }
        fix_checksum(&mut t);
        t
    }

    pub(crate) fn fix_checksum(t: &mut [u8]) {
        t[9] = 0;
        t[9] = t.iter().fold(0u8, |s, b| s.wrapping_add(*b)).wrapping_neg();
    }

    #[test]
    fn qemu_q35_and_acpi1_tables() {
        // q35: ICH9's PM block at 0x600, timer at 0x608, both addresses given, 24 bits.
        let q35 = fadt(276, (0x608, 4), 0x0000_04a5, Some((1, 32, 0x608)));
        assert_eq!(
            parse_fadt(&q35),
            Ok(PmTimerPort {
                port: 0x608,
                bits: 24,
                extended: true
            })
        );
        // ACPI 1.0: no extended address; TMR_VAL_EXT: 32 bits.
        let old = fadt(116, (0xb008, 4), FLAG_TMR_VAL_EXT, None);
        assert_eq!(
            parse_fadt(&old),
            Ok(PmTimerPort {
                port: 0xb008,
                bits: 32,
                extended: false
            })
        );
        // Extended address zero: the legacy one.
        let zero_x = fadt(276, (0x408, 4), 0, Some((1, 32, 0)));
        assert_eq!(
            parse_fadt(&zero_x).map(|p| (p.port, p.extended)),
            Ok((0x408, false))
        );
    }

    #[test]
    fn extended_address_outside_io_space() {
        // Memory space with a legacy port: the port.
        let mem = fadt(276, (0x608, 4), 0, Some((0, 32, 0xfed0_0f00)));
        assert_eq!(
            parse_fadt(&mem).map(|p| (p.port, p.extended)),
            Ok((0x608, false))
        );
        // Memory space alone: refused, naming the space.
        let mem_only = fadt(276, (0, 0), 0, Some((0, 32, 0xfed0_0f00)));
        assert_eq!(parse_fadt(&mem_only), Err(PmTimerError::NotSystemIo(0)));
        // I/O space but a port beyond 16 bits, or an odd width: refused.
        let high = fadt(276, (0, 0), 0, Some((1, 32, 0x1_0000)));
        assert_eq!(parse_fadt(&high), Err(PmTimerError::BadAddress(0x1_0000)));
        let width = fadt(276, (0, 0), 0, Some((1, 16, 0x608)));
        assert_eq!(parse_fadt(&width), Err(PmTimerError::BadAddress(0x608)));
    }

    #[test]
    fn no_timer() {
        let microvm = fadt(276, (0, 0), FLAG_HW_REDUCED_ACPI, None);
        assert_eq!(parse_fadt(&microvm), Err(PmTimerError::HardwareReduced));
        assert!(PmTimerError::HardwareReduced.is_missing());
        let none = fadt(276, (0, 0), 0, None);
        assert_eq!(parse_fadt(&none), Err(PmTimerError::NotPresent));
    }

    #[test]
    fn malformed_tables_are_refused() {
        let good = fadt(276, (0x608, 4), 0, Some((1, 32, 0x608)));
        assert_eq!(parse_fadt(&good[..200]), Err(PmTimerError::BadLength(276)));
        assert_eq!(parse_fadt(&good[..4]), Err(PmTimerError::BadLength(0)));
        let mut short = good.clone();
        short[4..8].copy_from_slice(&100u32.to_le_bytes());
        fix_checksum(&mut short);
        assert_eq!(parse_fadt(&short), Err(PmTimerError::BadLength(100)));
        assert!(!PmTimerError::BadLength(100).is_missing());
        let mut sum = good.clone();
        sum[200] ^= 0x40;
        assert_eq!(parse_fadt(&sum), Err(PmTimerError::BadChecksum));
        let mut sig = good.clone();
        sig[..4].copy_from_slice(b"APIC");
        fix_checksum(&mut sig);
        assert_eq!(parse_fadt(&sig), Err(PmTimerError::BadSignature));
        // A length that stops inside X_PM_TMR_BLK: the extended field is not read.
        let mut cut = fadt(276, (0x608, 4), 0, Some((1, 32, 0x1234)));
        cut[4..8].copy_from_slice(&216u32.to_le_bytes());
        fix_checksum(&mut cut[..216]);
        assert_eq!(
            parse_fadt(&cut).map(|p| (p.port, p.extended)),
            Ok((0x608, false))
        );
        for (port, len) in [(0x608, 0), (0x608, 8), (0xfffe, 4), (0x1_0000, 4)] {
            let bad = fadt(276, (port, len), 0, None);
            assert_eq!(
                parse_fadt(&bad),
                Err(PmTimerError::BadLegacyBlock { port, len }),
                "{port:#x} {len}"
            );
        }
    }
}
