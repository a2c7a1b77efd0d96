//! The ACPI Multiple APIC Description Table (ACPI 6.5 §5.2.12): which CPUs an x86 machine has,
//! where its I/O APICs are, and how ISA IRQs are wired.
//!
//! The `acpi` crate finds the RSDP, the RSDT/XSDT and the MADT and checks signatures and
//! checksums. Its MADT entry iterator, however, trusts every entry's length (a zero length
//! loops forever, one past the table reads beyond it), so [`read`] walks the entries once
//! itself, refusing any whose length is shorter than its type or runs past the table, before
//! the crate's iterator sees them. Every mapping the crate asks for must lie inside the
//! [`Window`] the caller vouches for, else reading stops with a panic naming the address (the
//! crate's handler interface cannot return an error).
//!
//! [`read`] allocates nothing: the crate is used without its `alloc` features.
#![allow(
    unsafe_code,
    reason = "the acpi crate's handler contract and reading tables in place; each use has a SAFETY note"
)]

use crate::ioapic::IsaOverride;
use crate::ioapic::{Polarity, TriggerMode};
use acpi::madt::{
    EntryHeader, GicInterruptTranslationServiceEntry, GicMsiFrameEntry, GicRedistributorEntry,
    GiccEntry, GicdEntry, InterruptSourceOverrideEntry, IoApicEntry, IoSapicEntry,
    LocalApicAddressOverrideEntry, LocalApicEntry, LocalApicNmiEntry, LocalSapicEntry,
    LocalX2ApicEntry, Madt, MadtEntry, MultiprocessorWakeupEntry, NmiSourceEntry,
    PlatformInterruptSourceEntry, X2ApicNmiEntry,
};
use acpi::{AcpiHandler, AcpiTable, AcpiTables, PhysicalMapping};
use core::mem::size_of;
use core::ptr::NonNull;
use rhea_hal::IrqLine;
use rhea_smp::CpuTable;

/// Physical addresses the caller can read 1:1 (identity-mapped, or host memory in tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First readable address.
    pub start: usize,
    /// One past the last readable address.
    pub end: usize,
}

/// The `acpi` crate's mapping hook over an identity-mapped [`Window`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Identity(pub(crate) Window);

impl AcpiHandler for Identity {
    unsafe fn map_physical_region<T>(
        &self,
        address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let w = self.0;
        // A table whose `length` is below its structure's size (an MADT of 40 bytes) is
        // mapped whole all the same when the memory after it is readable: the parsers then
        // refuse it by its length (`MadtError::TooShort`, `McfgError::BadLength`) instead of
        // the boot stopping here (found by `cargo xtask fuzz acpi`).
        let mapped = size.max(size_of::<T>());
        let inside = address >= w.start
            && address != 0
            && address.checked_add(mapped).is_some_and(|end| end <= w.end);
        if !inside {
            panic!(
                "ACPI: firmware table at {address:#x} ({size} bytes, needs {}) lies outside readable memory {:#x}..{:#x}",
                size_of::<T>(),
                w.start,
                w.end
            );
        }
        let Some(ptr) = NonNull::new(address as *mut T) else {
            unreachable!("address 0 was refused above")
        };
        // SAFETY: `mapped` bytes (at least a whole `T`) were checked to lie inside the window,
        // which the caller of `read` vouched is readable 1:1 for as long as the tables are
        // used; nothing is unmapped. The region keeps the length asked for.
        unsafe { PhysicalMapping::new(address, ptr, size, mapped, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// An I/O APIC the MADT describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApicInfo {
    /// Its APIC ID.
    pub id: u8,
    /// Its register page.
    pub address: u64,
    /// The first GSI it serves.
    pub gsi_base: u32,
}

/// The most I/O APICs and ISA overrides kept.
pub const MAX_IOAPICS: usize = 8;
/// ISA IRQs are 0..16; one override each at most.
pub const MAX_OVERRIDES: usize = 16;

/// What the MADT says.
#[derive(Clone, Debug)]
pub struct MadtInfo {
    /// The local APIC's physical address (after any 64-bit override).
    pub local_apic_address: u64,
    /// The CPUs to run on: the boot CPU first, then enabled ones in table order, up to the limit.
    pub cpus: CpuTable,
    /// Processor entries marked neither enabled nor online-capable, or only online-capable
    /// (hot-pluggable, not present at boot): not started.
    pub not_enabled: usize,
    /// x2APIC processors (ID above 254) skipped because the local APIC runs in xAPIC mode.
    pub x2apic_skipped: usize,
    io_apics: [IoApicInfo; MAX_IOAPICS],
    io_apic_count: usize,
    overrides: [IsaOverride; MAX_OVERRIDES],
    override_count: usize,
    /// Whether the legacy 8259 pair is present (MADT flag PCAT_COMPAT).
    pub has_8259: bool,
}

impl MadtInfo {
    /// The I/O APICs, in table order.
    pub fn io_apics(&self) -> &[IoApicInfo] {
        &self.io_apics[..self.io_apic_count]
    }

    /// The ISA IRQ overrides, in table order.
    pub fn overrides(&self) -> &[IsaOverride] {
        &self.overrides[..self.override_count]
    }
}

/// Why the MADT could not be used.
#[derive(Debug)]
pub enum MadtError {
    /// The RSDP, the root table or the MADT was not found or failed validation (signature,
    /// checksum, revision): the `acpi` crate's verdict.
    Acpi(acpi::AcpiError),
    /// The MADT's length is shorter than its fixed part.
    TooShort {
        /// The length the header states.
        length: u32,
    },
    /// An entry's length is shorter than its type or runs past the table.
    BadEntry {
        /// Offset of the entry from the table's start.
        offset: usize,
        /// Its type byte.
        entry_type: u8,
        /// Its length byte.
        length: u8,
    },
    /// More I/O APICs than [`MAX_IOAPICS`].
    TooManyIoApics,
    /// An interrupt source override for a non-ISA bus or an IRQ above 15, or a repeated IRQ.
    BadOverride {
        /// The bus byte.
        bus: u8,
        /// The IRQ byte.
        irq: u8,
    },
}

impl core::fmt::Display for MadtError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Acpi(e) => write!(f, "ACPI tables: {}", AcpiErrorText(e)),
            Self::TooShort { length } => {
                write!(f, "MADT length {length} is below its 44-byte header")
            }
            Self::BadEntry {
                offset,
                entry_type,
                length,
            } => write!(
                f,
                "MADT entry at offset {offset} (type {entry_type:#x}) has length {length}, too short for its type or past the table's end"
            ),
            Self::TooManyIoApics => write!(f, "MADT lists more than {MAX_IOAPICS} I/O APICs"),
            Self::BadOverride { bus, irq } => write!(
                f,
                "MADT interrupt source override for bus {bus} IRQ {irq} (only ISA IRQs 0..16, once each)"
            ),
        }
    }
}

/// The smallest length an entry of `entry_type` may have: the size of the structure the
/// `acpi` crate will read it as (2 for reserved and OEM types, which it skips).
fn min_entry_len(entry_type: u8) -> usize {
    match entry_type {
        0x0 => size_of::<LocalApicEntry>(),
        0x1 => size_of::<IoApicEntry>(),
        0x2 => size_of::<InterruptSourceOverrideEntry>(),
        0x3 => size_of::<NmiSourceEntry>(),
        0x4 => size_of::<LocalApicNmiEntry>(),
        0x5 => size_of::<LocalApicAddressOverrideEntry>(),
        0x6 => size_of::<IoSapicEntry>(),
        0x7 => size_of::<LocalSapicEntry>(),
        0x8 => size_of::<PlatformInterruptSourceEntry>(),
        0x9 => size_of::<LocalX2ApicEntry>(),
        0xa => size_of::<X2ApicNmiEntry>(),
        0xb => size_of::<GiccEntry>(),
        0xc => size_of::<GicdEntry>(),
        0xd => size_of::<GicMsiFrameEntry>(),
        0xe => size_of::<GicRedistributorEntry>(),
        0xf => size_of::<GicInterruptTranslationServiceEntry>(),
        0x10 => size_of::<MultiprocessorWakeupEntry>(),
        _ => size_of::<EntryHeader>(),
    }
}

/// The fixed part of the MADT: the SDT header, the local APIC address and the flags.
const MADT_HEADER_LEN: usize = 44;

/// Checks every entry's length against its type and the table's end.
fn validate_entries(table: &[u8]) -> Result<(), MadtError> {
    let mut offset = MADT_HEADER_LEN;
    while offset < table.len() {
        let entry_type = table[offset];
        let length = table.get(offset + 1).copied().unwrap_or(0);
        let fits = offset + usize::from(length) <= table.len();
        if usize::from(length) < min_entry_len(entry_type) || !fits {
            return Err(MadtError::BadEntry {
                offset,
                entry_type,
                length,
            });
        }
        offset += usize::from(length);
    }
    Ok(())
}

/// Where a caller finds the RSDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rsdp {
    /// At this physical address (the boot protocol said so: PVH `rsdp_paddr`, UEFI).
    At(usize),
    /// Search the BIOS areas (the EBDA's first KiB and 0xE0000..0x100000).
    SearchBios,
}

/// The `acpi` crate's error in words. Its `Debug` would do, but it costs the image the whole
/// `Debug` machinery and a UTF-8 check's (for the table signatures) for a message that only a
/// broken firmware ever shows.
pub(crate) struct AcpiErrorText<'a>(pub(crate) &'a acpi::AcpiError);

impl core::fmt::Display for AcpiErrorText<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use acpi::{AcpiError as E, sdt::Signature};
        let table = |s: &Signature| {
            const KNOWN: [(Signature, &str); 9] = [
                (Signature::RSDT, "RSDT"),
                (Signature::XSDT, "XSDT"),
                (Signature::FADT, "FADT"),
                (Signature::MADT, "MADT"),
                (Signature::HPET, "HPET"),
                (Signature::MCFG, "MCFG"),
                (Signature::DSDT, "DSDT"),
                (Signature::SSDT, "SSDT"),
                (Signature::FACS, "FACS"),
            ];
            KNOWN
                .iter()
                .find(|(k, _)| k == s)
                .map_or("an ACPI table", |(_, name)| name)
        };
        let (what, sig) = match self.0 {
            E::NoValidRsdp => ("no valid RSDP", None),
            E::RsdpIncorrectSignature => ("RSDP: wrong signature", None),
            E::RsdpInvalidOemId => ("RSDP: OEM id not ASCII", None),
            E::RsdpInvalidChecksum => ("RSDP: bad checksum", None),
            E::SdtInvalidSignature(s) => ("wrong signature: ", Some(s)),
            E::SdtInvalidOemId(s) => ("OEM id not ASCII: ", Some(s)),
            E::SdtInvalidTableId(s) => ("table id not ASCII: ", Some(s)),
            E::SdtInvalidChecksum(s) => ("bad checksum: ", Some(s)),
            E::TableMissing(s) => ("missing: ", Some(s)),
            E::InvalidFacsAddress => ("invalid FACS address", None),
            E::InvalidDsdtAddress => ("invalid DSDT address", None),
            E::InvalidMadt(_) => ("invalid MADT", None),
            E::InvalidGenericAddress => ("invalid generic address", None),
            E::AllocError => ("allocation failed", None),
        };
        f.write_str(what)?;
        sig.map_or(Ok(()), |s| f.write_str(table(s)))
    }
}

/// The ACPI tables `rsdp` leads to, read through `handler` (the RSDP and the root table
/// checked by the `acpi` crate).
///
/// # Safety
/// As for [`read`]: every address in the handler's window is readable (1:1) for as long as
/// the tables are used.
pub(crate) unsafe fn tables(
    handler: Identity,
    rsdp: Rsdp,
) -> Result<AcpiTables<Identity>, acpi::AcpiError> {
    // SAFETY: forwarded: the handler only hands out mappings inside the caller's window.
    unsafe {
        match rsdp {
            Rsdp::At(address) => AcpiTables::from_rsdp(handler, address),
            Rsdp::SearchBios => AcpiTables::search_for_rsdp_bios(handler),
        }
    }
}

/// The bytes of a table the `acpi` crate found: its header's `length` of them, or `None` if
/// that is more than was mapped.
pub(crate) fn table_bytes<T: AcpiTable>(table: &PhysicalMapping<Identity, T>) -> Option<&[u8]> {
    let length = { table.get().header().length } as usize;
    if length > table.region_length() {
        return None;
    }
    // SAFETY: the mapping covers `region_length` bytes from its start, which the handler
    // checked lie inside the window the caller vouched is readable while the tables are used;
    // `length` is within them, and nothing writes firmware tables.
    Some(unsafe {
        core::slice::from_raw_parts(table.virtual_start().as_ptr().cast::<u8>(), length)
    })
}

/// Reads the MADT. `boot_apic_id` is the running CPU's APIC ID (it becomes CPU 0);
/// `x2apic` says whether the local APIC runs in x2APIC mode (else IDs above 254 cannot be
/// addressed); at most `limit` CPUs are kept.
///
/// # Safety
/// Every address in `window` is readable (1:1) for the duration of the call, and if
/// `rsdp` is [`Rsdp::SearchBios`] the window covers the BIOS areas.
pub unsafe fn read(
    rsdp: Rsdp,
    window: Window,
    boot_apic_id: u32,
    x2apic: bool,
    limit: usize,
) -> Result<MadtInfo, MadtError> {
    let handler = Identity(window);
    // SAFETY: forwarded: the handler only hands out mappings inside the caller's window.
    let tables = unsafe {
        match rsdp {
            Rsdp::At(address) => AcpiTables::from_rsdp(handler, address),
            Rsdp::SearchBios => AcpiTables::search_for_rsdp_bios(handler),
        }
    }
    .map_err(MadtError::Acpi)?;
    let madt = tables.find_table::<Madt>().map_err(MadtError::Acpi)?;
    let length = { madt.get().header.length };
    if (length as usize) < MADT_HEADER_LEN || (length as usize) > madt.region_length() {
        return Err(MadtError::TooShort { length });
    }
    // SAFETY: the mapping covers `region_length` bytes from its start (the handler checked
    // them against the window) and `length` is within it.
    let bytes = unsafe {
        core::slice::from_raw_parts(madt.virtual_start().as_ptr().cast::<u8>(), length as usize)
    };
    validate_entries(bytes)?;

    let mut info = MadtInfo {
        local_apic_address: u64::from(madt.get().local_apic_address),
        cpus: CpuTable::new(u64::from(boot_apic_id)),
        not_enabled: 0,
        x2apic_skipped: 0,
        io_apics: [IoApicInfo {
            id: 0,
            address: 0,
            gsi_base: 0,
        }; MAX_IOAPICS],
        io_apic_count: 0,
        overrides: [IsaOverride::IRQ0_TO_GSI2; MAX_OVERRIDES],
        override_count: 0,
        has_8259: madt.get().supports_8259(),
    };
    for entry in madt.get().entries() {
        match entry {
            MadtEntry::LocalApic(e) => {
                let (id, flags) = (e.apic_id, { e.flags });
                add_cpu(&mut info, u32::from(id), flags, id == 0xff, limit);
            }
            MadtEntry::LocalX2Apic(e) => {
                let (id, flags) = ({ e.x2apic_id }, { e.flags });
                if !x2apic && id > 0xfe {
                    if flags & 1 != 0 {
                        info.x2apic_skipped += 1;
                    }
                    continue;
                }
                add_cpu(&mut info, id, flags, id == u32::MAX, limit);
            }
            MadtEntry::IoApic(e) => {
                if info.io_apic_count == MAX_IOAPICS {
                    return Err(MadtError::TooManyIoApics);
                }
                info.io_apics[info.io_apic_count] = IoApicInfo {
                    id: e.io_apic_id,
                    address: u64::from(e.io_apic_address),
                    gsi_base: { e.global_system_interrupt_base },
                };
                info.io_apic_count += 1;
            }
            MadtEntry::InterruptSourceOverride(e) => {
                let (bus, irq, gsi, flags) =
                    (e.bus, e.irq, { e.global_system_interrupt }, { e.flags });
                let repeated = info.overrides().iter().any(|o| o.isa_irq == irq);
                if bus != 0 || irq >= 16 || repeated {
                    return Err(MadtError::BadOverride { bus, irq });
                }
                info.overrides[info.override_count] = IsaOverride {
                    isa_irq: irq,
                    gsi: IrqLine(gsi),
                    // MPS INTI flags: polarity bits 0–1, trigger bits 2–3; 0 = the bus's
                    // default (ISA: active high, edge).
                    polarity: if flags & 0b11 == 0b11 {
                        Polarity::ActiveLow
                    } else {
                        Polarity::ActiveHigh
                    },
                    trigger_mode: if (flags >> 2) & 0b11 == 0b11 {
                        TriggerMode::Level
                    } else {
                        TriggerMode::Edge
                    },
                };
                info.override_count += 1;
            }
            MadtEntry::LocalApicAddressOverride(e) => {
                info.local_apic_address = e.local_apic_address;
            }
            _ => {}
        }
    }
    Ok(info)
}

/// Adds a processor entry: enabled ones (flag bit 0) are started; online-capable or disabled
/// ones are counted; the reserved all-ones IDs are ignored.
fn add_cpu(info: &mut MadtInfo, id: u32, flags: u32, reserved_id: bool, limit: usize) {
    if reserved_id {
        return;
    }
    if flags & 1 == 0 {
        info.not_enabled += 1;
        return;
    }
    info.cpus.push(u64::from(id), limit);
}

#[cfg(test)]
mod tests;
