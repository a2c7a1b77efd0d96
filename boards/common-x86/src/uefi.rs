//! The hand-off between Rhea's UEFI loader (`boards/pc-uefi/loader`, a UEFI application) and
//! the kernel it carries, and what each side checks of the other's data. Hardware-free and
//! host-tested; both sides use this one definition.
//!
//! # The record
//! One 4 KiB page below 4 GiB, filled by the loader, whose address the kernel's 64-bit entry
//! (`rhea_start64`) receives in `RDI`:
//!
//! | offset | what |
//! |---|---|
//! | 0 | a PVH `hvm_start_info`, version 0: magic, `nr_modules` and `modlist_paddr`, `cmdline_paddr`, `rsdp_paddr` (so the PVH parser [`crate::pvh`] validates it like every other PC boot, and takes the initrd as it takes QEMU's `-initrd`) |
//! | [`EXT_OFFSET`] | Rhea's UEFI record: magic [`EXT_MAGIC`], version, the raw UEFI memory map (address, bytes, descriptor size and version), the GOP framebuffer |
//! | [`MODLIST_OFFSET`] | when there is an initrd ([`INITRD_FILE`] on the loader's partition, read into loader memory below 4 GiB): its one `hvm_modlist_entry` (address, bytes) |
//! | [`CMDLINE_OFFSET`] | the command line, NUL-terminated, at most [`crate::pvh::MAX_CMDLINE`] bytes |
//!
//! The memory map is passed raw, as UEFI's `ExitBootServices` left it, and converted by the
//! kernel ([`e820_from_uefi`]), not by the loader: after `ExitBootServices` the loader has no
//! console, while the kernel reports a malformed map on every console it has.
//!
//! # The image
//! The loader carries the kernel's ELF and loads it at its physical addresses (the same
//! 1 MiB-based layout as every PVH board, `boards/common-x86/link.ld`); [`plan_load`] checks the
//! ELF before anything is allocated.

use crate::pvh::{E820Entry, MAGIC as PVH_MAGIC, MAX_CMDLINE, PhysMemory};
use core::fmt;

/// Bytes of the hand-off page.
pub const HANDOFF_BYTES: usize = 4096;
/// Where Rhea's UEFI record starts in the page (after the 48-byte version-0 start info).
pub const EXT_OFFSET: usize = 64;
/// Where the module list (the initrd's entry) starts in the page.
pub const MODLIST_OFFSET: usize = 512;
/// Where the command line starts in the page.
pub const CMDLINE_OFFSET: usize = 1024;
/// The initramfs (a cpio archive) the loader hands over when its partition has one:
/// `\initrd.img`, a name an 8.3 entry holds (the disk images xtask writes have no long names).
pub const INITRD_FILE: &str = "\\initrd.img";
/// The record's magic: "RHEAUEFI".
pub const EXT_MAGIC: u64 = u64::from_le_bytes(*b"RHEAUEFI");
/// The record's version.
pub const EXT_VERSION: u32 = 1;
/// Bytes of the record.
const EXT_BYTES: usize = 80;

/// Most UEFI memory descriptors taken (OVMF gives about 100, real PCs up to a few hundred).
pub const MAX_UEFI_DESCRIPTORS: usize = 1024;
/// The size of `EFI_MEMORY_DESCRIPTOR` in UEFI 2.x; firmware may use a larger stride.
pub const UEFI_DESCRIPTOR_MIN: u32 = 40;
/// Most e820 entries [`e820_from_uefi`] returns (the PVH parser takes up to 128).
pub const MAX_E820: usize = 128;

/// How the framebuffer's 32-bit pixels are laid out.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PixelOrder {
    /// Byte 0 red, 1 green, 2 blue (GOP `PixelRedGreenBlueReserved8BitPerColor`).
    Rgb,
    /// Byte 0 blue, 1 green, 2 red (GOP `PixelBlueGreenRedReserved8BitPerColor`).
    Bgr,
}

/// The GOP framebuffer, as the loader found it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Framebuffer {
    /// Physical address of pixel (0, 0).
    pub base: u64,
    /// Bytes of the framebuffer.
    pub bytes: u64,
    /// Visible pixels per line.
    pub width: u32,
    /// Lines.
    pub height: u32,
    /// Pixels from one line to the next (at least `width`).
    pub stride: u32,
    /// The pixel layout.
    pub order: PixelOrder,
}

/// Everything the loader hands over besides the start info's command line and RSDP.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Handoff {
    /// Physical address of the UEFI memory map (`ExitBootServices`'s).
    pub memmap: u64,
    /// Its bytes.
    pub memmap_bytes: u64,
    /// The stride between descriptors.
    pub desc_size: u32,
    /// `EFI_MEMORY_DESCRIPTOR_VERSION` as the firmware gave it (1).
    pub desc_version: u32,
    /// The GOP framebuffer, when there is one in a supported pixel format.
    pub framebuffer: Option<Framebuffer>,
}

/// Why a hand-off was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HandoffError {
    /// The page could not be read.
    Unreadable { addr: u64 },
    /// The start info's magic is wrong (not a Rhea UEFI loader's hand-off).
    BadStartInfo { found: u32 },
    /// The record's magic is wrong.
    BadMagic { found: u64 },
    /// A record version this kernel does not know.
    BadVersion { found: u32 },
    /// The memory map's descriptor stride is smaller than a descriptor or not 8-aligned.
    BadDescriptorSize { size: u32 },
    /// The memory map is empty, not a whole number of descriptors, or too long.
    BadMapLength { bytes: u64, desc_size: u32 },
    /// The framebuffer's geometry does not fit its size, or its pixel format is unknown.
    BadFramebuffer,
    /// A command line longer than the kernel keeps (loader side).
    CmdlineTooLong { bytes: usize },
}

impl fmt::Display for HandoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Unreadable { addr } => write!(f, "cannot read the hand-off page at {addr:#x}"),
            Self::BadStartInfo { found } => write!(
                f,
                "the start info's magic is {found:#x}, expected {PVH_MAGIC:#x}"
            ),
            Self::BadMagic { found } => write!(
                f,
                "the UEFI record's magic is {found:#x}, expected {EXT_MAGIC:#x} (\"RHEAUEFI\")"
            ),
            Self::BadVersion { found } => write!(
                f,
                "UEFI record version {found}, this kernel reads version {EXT_VERSION}"
            ),
            Self::BadDescriptorSize { size } => write!(
                f,
                "UEFI memory descriptors of {size} bytes (at least {UEFI_DESCRIPTOR_MIN}, a \
                 multiple of 8)"
            ),
            Self::BadMapLength { bytes, desc_size } => write!(
                f,
                "a UEFI memory map of {bytes} bytes is not 1..={MAX_UEFI_DESCRIPTORS} \
                 descriptors of {desc_size} bytes"
            ),
            Self::BadFramebuffer => write!(
                f,
                "the framebuffer's geometry or pixel format is inconsistent"
            ),
            Self::CmdlineTooLong { bytes } => write!(
                f,
                "a command line of {bytes} bytes (at most {} kept)",
                MAX_CMDLINE - 1
            ),
        }
    }
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
fn get32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}
fn get64(b: &[u8], off: usize) -> u64 {
    u64::from(get32(b, off)) | (u64::from(get32(b, off + 4)) << 32)
}

fn order_code(order: Option<PixelOrder>) -> u32 {
    match order {
        None => 0,
        Some(PixelOrder::Rgb) => 1,
        Some(PixelOrder::Bgr) => 2,
    }
}

impl Framebuffer {
    /// Whether the geometry is plausible: non-empty, stride ≥ width, and every pixel inside
    /// `bytes`, without wrapping.
    pub fn is_consistent(&self) -> bool {
        let need = u64::from(self.stride)
            .checked_mul(u64::from(self.height))
            .and_then(|px| px.checked_mul(4));
        self.width > 0
            && self.height > 0
            && self.stride >= self.width
            && need.is_some_and(|n| n <= self.bytes)
            && self.base.checked_add(self.bytes).is_some()
    }
}

impl Handoff {
    /// Writes the hand-off page: the version-0 start info (magic, `cmdline_paddr` pointing into
    /// the page at `page_addr`, `rsdp`, and the module list when there is an `initrd`, as
    /// `(address, bytes)`), this record and the command line.
    pub fn encode(
        &self,
        page_addr: u64,
        rsdp: Option<u64>,
        initrd: Option<(u64, u64)>,
        cmdline: &[u8],
        page: &mut [u8; HANDOFF_BYTES],
    ) -> Result<(), HandoffError> {
        if cmdline.len() >= MAX_CMDLINE || cmdline.contains(&0) {
            return Err(HandoffError::CmdlineTooLong {
                bytes: cmdline.len(),
            });
        }
        page.fill(0);
        put32(page, 0, PVH_MAGIC);
        put32(page, 4, 0);
        put64(page, 24, page_addr + CMDLINE_OFFSET as u64);
        put64(page, 32, rsdp.unwrap_or(0));
        if let Some((addr, bytes)) = initrd.filter(|&(_, bytes)| bytes > 0) {
            // nr_modules, modlist_paddr; the entry: paddr, size, cmdline_paddr (none).
            put32(page, 12, 1);
            put64(page, 16, page_addr + MODLIST_OFFSET as u64);
            put64(page, MODLIST_OFFSET, addr);
            put64(page, MODLIST_OFFSET + 8, bytes);
        }
        let e = EXT_OFFSET;
        put64(page, e, EXT_MAGIC);
        put32(page, e + 8, EXT_VERSION);
        put64(page, e + 16, self.memmap);
        put64(page, e + 24, self.memmap_bytes);
        put32(page, e + 32, self.desc_size);
        put32(page, e + 36, self.desc_version);
        if let Some(fb) = self.framebuffer {
            put64(page, e + 40, fb.base);
            put64(page, e + 48, fb.bytes);
            put32(page, e + 56, fb.width);
            put32(page, e + 60, fb.height);
            put32(page, e + 64, fb.stride);
        }
        put32(page, e + 68, order_code(self.framebuffer.map(|f| f.order)));
        page[CMDLINE_OFFSET..CMDLINE_OFFSET + cmdline.len()].copy_from_slice(cmdline);
        Ok(())
    }

    /// Reads and checks the record of the hand-off page at `addr` (the start info in it is
    /// the PVH parser's to check in full).
    pub fn decode(mem: &impl PhysMemory, addr: u64) -> Result<Handoff, HandoffError> {
        let mut head = [0u8; 4];
        let mut b = [0u8; EXT_BYTES];
        let ext = addr.checked_add(EXT_OFFSET as u64);
        if !mem.read(addr, &mut head) || !ext.is_some_and(|at| mem.read(at, &mut b)) {
            return Err(HandoffError::Unreadable { addr });
        }
        let start_magic = get32(&head, 0);
        if start_magic != PVH_MAGIC {
            return Err(HandoffError::BadStartInfo { found: start_magic });
        }
        let magic = get64(&b, 0);
        if magic != EXT_MAGIC {
            return Err(HandoffError::BadMagic { found: magic });
        }
        let version = get32(&b, 8);
        if version != EXT_VERSION {
            return Err(HandoffError::BadVersion { found: version });
        }
        let desc_size = get32(&b, 32);
        if desc_size < UEFI_DESCRIPTOR_MIN || !desc_size.is_multiple_of(8) {
            return Err(HandoffError::BadDescriptorSize { size: desc_size });
        }
        let memmap_bytes = get64(&b, 24);
        let count = memmap_bytes / u64::from(desc_size);
        if !memmap_bytes.is_multiple_of(u64::from(desc_size))
            || count == 0
            || count > MAX_UEFI_DESCRIPTORS as u64
        {
            return Err(HandoffError::BadMapLength {
                bytes: memmap_bytes,
                desc_size,
            });
        }
        let order = match get32(&b, 68) {
            0 => None,
            1 => Some(PixelOrder::Rgb),
            2 => Some(PixelOrder::Bgr),
            _ => return Err(HandoffError::BadFramebuffer),
        };
        let framebuffer = match order {
            None => None,
            Some(order) => {
                let fb = Framebuffer {
                    base: get64(&b, 40),
                    bytes: get64(&b, 48),
                    width: get32(&b, 56),
                    height: get32(&b, 60),
                    stride: get32(&b, 64),
                    order,
                };
                if !fb.is_consistent() {
                    return Err(HandoffError::BadFramebuffer);
                }
                Some(fb)
            }
        };
        Ok(Handoff {
            memmap: get64(&b, 16),
            memmap_bytes,
            desc_size,
            desc_version: get32(&b, 36),
            framebuffer,
        })
    }
}

/// UEFI memory types (UEFI 2.10 §7.2, `EFI_MEMORY_TYPE`) that matter here.
mod efi {
    pub(super) const LOADER_CODE: u32 = 1;
    pub(super) const LOADER_DATA: u32 = 2;
    pub(super) const BOOT_SERVICES_CODE: u32 = 3;
    pub(super) const BOOT_SERVICES_DATA: u32 = 4;
    pub(super) const CONVENTIONAL: u32 = 7;
    pub(super) const ACPI_RECLAIM: u32 = 9;
    pub(super) const ACPI_NVS: u32 = 10;
    /// `EFI_MEMORY_SP`: "specific purpose" memory, not for general use.
    pub(super) const ATTR_SPECIFIC_PURPOSE: u64 = 0x4_0000;
}

/// The e820 type of a UEFI memory type, once boot services have exited: loader and boot
/// services memory is free RAM; runtime services memory, MMIO, unusable, persistent,
/// unaccepted and OS-defined types are reserved.
fn e820_kind(efi_type: u32, attribute: u64) -> u32 {
    if attribute & efi::ATTR_SPECIFIC_PURPOSE != 0 {
        return 2;
    }
    match efi_type {
        efi::LOADER_CODE
        | efi::LOADER_DATA
        | efi::BOOT_SERVICES_CODE
        | efi::BOOT_SERVICES_DATA
        | efi::CONVENTIONAL => 1,
        efi::ACPI_RECLAIM => 3,
        efi::ACPI_NVS => 4,
        _ => 2,
    }
}

/// Why a UEFI memory map was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MemmapError {
    /// A descriptor could not be read.
    Unreadable { index: usize },
    /// A descriptor's start is not 4 KiB-aligned, it has no pages, or it wraps.
    BadDescriptor {
        index: usize,
        start: u64,
        pages: u64,
    },
    /// Two descriptors overlap.
    Overlap { first: u64, second: u64 },
    /// More distinct regions than [`MAX_E820`] after merging neighbours of one kind.
    TooManyRegions,
}

impl fmt::Display for MemmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Unreadable { index } => {
                write!(f, "UEFI memory descriptor {index} cannot be read")
            }
            Self::BadDescriptor {
                index,
                start,
                pages,
            } => write!(
                f,
                "UEFI memory descriptor {index} ({pages} pages at {start:#x}) is unaligned, \
                 empty or wraps"
            ),
            Self::Overlap { first, second } => write!(
                f,
                "UEFI memory descriptors at {first:#x} and {second:#x} overlap"
            ),
            Self::TooManyRegions => write!(
                f,
                "the UEFI memory map has more than {MAX_E820} distinct regions"
            ),
        }
    }
}

/// An e820-style map made from a UEFI map: sorted, neighbours of one kind merged.
#[derive(Clone, Debug)]
pub struct E820Map {
    entries: [E820Entry; MAX_E820],
    len: usize,
}

impl E820Map {
    /// The entries.
    pub fn entries(&self) -> &[E820Entry] {
        &self.entries[..self.len]
    }
}

/// Converts the raw UEFI memory map at `addr` (`bytes` long, descriptors `desc_size` apart)
/// into a sorted e820 map, merging neighbours of the same kind. Descriptors are checked one by
/// one (alignment, length, wrap) and against each other (overlap) — firmware maps are sorted
/// in practice but the specification does not promise it, so the order does not matter here.
/// Quadratic in the descriptor count (at most [`MAX_UEFI_DESCRIPTORS`]), without allocation:
/// each round takes the lowest descriptor above the previous one.
pub fn e820_from_uefi(
    mem: &impl PhysMemory,
    addr: u64,
    bytes: u64,
    desc_size: u32,
) -> Result<E820Map, MemmapError> {
    let count = (bytes / u64::from(desc_size.max(1))).min(MAX_UEFI_DESCRIPTORS as u64) as usize;
    let read = |i: usize| -> Result<(u64, u64, u32), MemmapError> {
        let mut d = [0u8; UEFI_DESCRIPTOR_MIN as usize];
        let at = (i as u64)
            .checked_mul(u64::from(desc_size))
            .and_then(|off| addr.checked_add(off));
        if !at.is_some_and(|at| mem.read(at, &mut d)) {
            return Err(MemmapError::Unreadable { index: i });
        }
        let (kind, start, pages, attr) = (get32(&d, 0), get64(&d, 8), get64(&d, 24), get64(&d, 32));
        let len = pages.checked_mul(4096);
        let end = len.and_then(|l| start.checked_add(l));
        if start % 4096 != 0 || pages == 0 || end.is_none() {
            return Err(MemmapError::BadDescriptor {
                index: i,
                start,
                pages,
            });
        }
        Ok((start, len.unwrap_or(0), e820_kind(kind, attr)))
    };
    // Validate every descriptor once before the ordered walk.
    for i in 0..count {
        read(i)?;
    }
    let mut out = E820Map {
        entries: [E820Entry {
            addr: 0,
            size: 0,
            kind: 0,
        }; MAX_E820],
        len: 0,
    };
    let mut after: Option<u64> = None;
    loop {
        // The lowest start above `after`; two descriptors with one start overlap.
        let mut next: Option<(u64, u64, u32)> = None;
        for i in 0..count {
            let d = read(i)?;
            if after.is_some_and(|a| d.0 <= a) {
                continue;
            }
            match next {
                Some(n) if n.0 == d.0 => {
                    return Err(MemmapError::Overlap {
                        first: n.0,
                        second: d.0,
                    });
                }
                Some(n) if n.0 < d.0 => {}
                _ => next = Some(d),
            }
        }
        let Some((start, len, kind)) = next else {
            break;
        };
        after = Some(start);
        if let Some(last) = out.len.checked_sub(1).map(|i| &mut out.entries[i]) {
            let last_end = last.addr + last.size;
            if start < last_end {
                return Err(MemmapError::Overlap {
                    first: last.addr,
                    second: start,
                });
            }
            if start == last_end && kind == last.kind {
                last.size += len;
                continue;
            }
        }
        if out.len == MAX_E820 {
            return Err(MemmapError::TooManyRegions);
        }
        out.entries[out.len] = E820Entry {
            addr: start,
            size: len,
            kind,
        };
        out.len += 1;
    }
    Ok(out)
}

/// Lowest physical address the kernel image may load at (the link address of every PVH board).
pub const LOAD_MIN: u64 = 0x10_0000;
/// The image must end below this (the boot page tables map the first 4 GiB).
pub const LOAD_MAX: u64 = 0x1_0000_0000;
/// Most loadable segments taken.
pub const MAX_SEGMENTS: usize = 8;

/// One `PT_LOAD` segment to copy: `file_bytes` from `offset` in the ELF to `paddr`, then zeros up
/// to `mem_bytes`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Segment {
    /// Physical address.
    pub paddr: u64,
    /// Offset in the ELF file.
    pub offset: u64,
    /// Bytes from the file.
    pub file_bytes: u64,
    /// Bytes in memory (≥ `file_bytes`).
    pub mem_bytes: u64,
}

/// What loading the kernel ELF takes: its segments, the page-aligned physical range they
/// cover, and the 64-bit entry point.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LoadPlan {
    /// The segments, `len` of them.
    pub segments: [Segment; MAX_SEGMENTS],
    /// How many.
    pub len: usize,
    /// First byte (page-aligned down).
    pub start: u64,
    /// End (page-aligned up).
    pub end: u64,
    /// The ELF entry (`rhea_start64`).
    pub entry: u64,
}

/// Why a kernel ELF cannot be loaded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ElfError {
    /// Not a 64-bit little-endian x86_64 executable ELF.
    NotX86_64Executable,
    /// The program header table lies outside the file or has an unexpected entry size.
    BadProgramHeaders,
    /// No `PT_LOAD` segment, or more than [`MAX_SEGMENTS`].
    SegmentCount { count: usize },
    /// A segment's file bytes lie outside the file, or it is larger in the file than in memory.
    SegmentOutsideFile { index: usize },
    /// A segment is outside `[LOAD_MIN, LOAD_MAX)` or wraps.
    SegmentAddress { index: usize, paddr: u64 },
    /// Two segments overlap.
    SegmentsOverlap,
    /// The entry point is in no executable segment.
    EntryOutsideText { entry: u64 },
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotX86_64Executable => {
                write!(f, "not a 64-bit little-endian x86_64 executable ELF")
            }
            Self::BadProgramHeaders => write!(f, "the program headers are outside the file"),
            Self::SegmentCount { count } => {
                write!(f, "{count} loadable segments (1..={MAX_SEGMENTS} expected)")
            }
            Self::SegmentOutsideFile { index } => {
                write!(f, "segment {index}'s bytes are outside the file")
            }
            Self::SegmentAddress { index, paddr } => write!(
                f,
                "segment {index} at {paddr:#x} is outside {LOAD_MIN:#x}..{LOAD_MAX:#x}"
            ),
            Self::SegmentsOverlap => write!(f, "two loadable segments overlap"),
            Self::EntryOutsideText { entry } => {
                write!(f, "the entry point {entry:#x} is in no executable segment")
            }
        }
    }
}

/// Checks the kernel ELF and says what to copy where.
pub fn plan_load(elf: &[u8]) -> Result<LoadPlan, ElfError> {
    const PT_LOAD: u32 = 1;
    const PF_X: u32 = 1;
    if elf.len() < 64
        || elf[0..4] != *b"\x7fELF"
        || elf[4] != 2
        || elf[5] != 1
        || u16::from_le_bytes([elf[16], elf[17]]) != 2
        || u16::from_le_bytes([elf[18], elf[19]]) != 62
    {
        return Err(ElfError::NotX86_64Executable);
    }
    let entry = get64(elf, 24);
    let phoff = get64(elf, 32);
    let phentsize = u16::from_le_bytes([elf[54], elf[55]]);
    let phnum = u16::from_le_bytes([elf[56], elf[57]]);
    let table_end = u64::from(phnum)
        .checked_mul(56)
        .and_then(|n| n.checked_add(phoff));
    if phentsize != 56 || table_end.is_none_or(|e| e > elf.len() as u64) {
        return Err(ElfError::BadProgramHeaders);
    }
    let mut plan = LoadPlan {
        segments: [Segment::default(); MAX_SEGMENTS],
        len: 0,
        start: u64::MAX,
        end: 0,
        entry,
    };
    let mut entry_ok = false;
    let mut loads = 0;
    for i in 0..usize::from(phnum) {
        let h = &elf[phoff as usize + i * 56..phoff as usize + (i + 1) * 56];
        if get32(h, 0) != PT_LOAD {
            continue;
        }
        loads += 1;
        if plan.len == MAX_SEGMENTS {
            continue;
        }
        let flags = get32(h, 4);
        let seg = Segment {
            offset: get64(h, 8),
            paddr: get64(h, 24),
            file_bytes: get64(h, 32),
            mem_bytes: get64(h, 40),
        };
        if seg.file_bytes > seg.mem_bytes
            || seg
                .offset
                .checked_add(seg.file_bytes)
                .is_none_or(|e| e > elf.len() as u64)
        {
            return Err(ElfError::SegmentOutsideFile { index: i });
        }
        let end = seg.paddr.checked_add(seg.mem_bytes);
        if seg.paddr < LOAD_MIN || end.is_none_or(|e| e > LOAD_MAX) {
            return Err(ElfError::SegmentAddress {
                index: i,
                paddr: seg.paddr,
            });
        }
        let end = end.unwrap_or(LOAD_MAX);
        if plan.segments[..plan.len]
            .iter()
            .any(|s| seg.paddr < s.paddr + s.mem_bytes && s.paddr < end)
        {
            return Err(ElfError::SegmentsOverlap);
        }
        if flags & PF_X != 0 && (seg.paddr..end).contains(&entry) {
            entry_ok = true;
        }
        plan.start = plan.start.min(seg.paddr & !0xfff);
        plan.end = plan.end.max((end + 0xfff) & !0xfff);
        plan.segments[plan.len] = seg;
        plan.len += 1;
    }
    if loads == 0 || loads > MAX_SEGMENTS {
        return Err(ElfError::SegmentCount { count: loads });
    }
    if !entry_ok {
        return Err(ElfError::EntryOutsideText { entry });
    }
    Ok(plan)
}

/// The config file on the EFI system partition that holds the command line, when the load
/// options give none (`cargo xtask image` writes it).
pub const CONFIG_FILE: &str = "\\rhea.cfg";

/// Where the command line came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CmdlineSource {
    /// The image's load options (a boot entry's optional data, or the UEFI shell's arguments).
    LoadOptions,
    /// [`CONFIG_FILE`].
    ConfigFile,
    /// Neither gave one.
    None,
}

/// Why the command line was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CmdlineError {
    /// Longer than the kernel keeps.
    TooLong { bytes: usize },
    /// The config file holds a NUL or is not UTF-8.
    NotText,
}

impl fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooLong { bytes } => write!(
                f,
                "the command line is {bytes} bytes, at most {} are kept",
                MAX_CMDLINE - 1
            ),
            Self::NotText => write!(f, "{CONFIG_FILE} is not UTF-8 text without NUL bytes"),
        }
    }
}

/// Chooses the command line and writes it to `out`, returning its length and source.
///
/// - **Load options** are used when they are UCS-2 printable ASCII text: firmware boot
///   entries often carry binary data there, which is ignored. The UEFI shell passes the
///   program's own name first; a first word ending in `.efi` is dropped.
/// - Else the **config file**: its first line that is neither empty nor a `#` comment,
///   trimmed (a UTF-8 byte-order mark is skipped).
pub fn choose_cmdline(
    load_options: &[u16],
    config: Option<&[u8]>,
    out: &mut [u8; MAX_CMDLINE],
) -> Result<(usize, CmdlineSource), CmdlineError> {
    let opts = load_options.split(|&c| c == 0).next().unwrap_or(&[]);
    if !opts.is_empty() && opts.iter().all(|&c| (0x20..0x7f).contains(&c)) {
        let mut ascii = [0u8; MAX_CMDLINE];
        if opts.len() >= MAX_CMDLINE {
            return Err(CmdlineError::TooLong { bytes: opts.len() });
        }
        for (d, &c) in ascii.iter_mut().zip(opts) {
            *d = c as u8;
        }
        let text = core::str::from_utf8(&ascii[..opts.len()])
            .unwrap_or("")
            .trim();
        let rest = match text.split_once(' ') {
            Some((first, rest)) if first.to_ascii_lowercase().ends_with(".efi") => rest,
            None if text.to_ascii_lowercase().ends_with(".efi") => "",
            _ => text,
        }
        .trim();
        if !rest.is_empty() {
            out[..rest.len()].copy_from_slice(rest.as_bytes());
            return Ok((rest.len(), CmdlineSource::LoadOptions));
        }
    }
    let Some(config) = config else {
        return Ok((0, CmdlineSource::None));
    };
    let config = config.strip_prefix(b"\xef\xbb\xbf").unwrap_or(config);
    if config.contains(&0) {
        return Err(CmdlineError::NotText);
    }
    let text = core::str::from_utf8(config).map_err(|_| CmdlineError::NotText)?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    if line.len() >= MAX_CMDLINE {
        return Err(CmdlineError::TooLong { bytes: line.len() });
    }
    out[..line.len()].copy_from_slice(line.as_bytes());
    Ok((
        line.len(),
        if line.is_empty() {
            CmdlineSource::None
        } else {
            CmdlineSource::ConfigFile
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fake physical memory: `len` bytes from `base`.
    struct Fake {
        base: u64,
        bytes: Vec<u8>,
    }

    impl PhysMemory for Fake {
        fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
            let Some(off) = paddr.checked_sub(self.base) else {
                return false;
            };
            match self
                .bytes
                .get(off as usize..(off as usize).saturating_add(buf.len()))
            {
                Some(s) => {
                    buf.copy_from_slice(s);
                    true
                }
                None => false,
            }
        }
    }

    fn fb() -> Framebuffer {
        Framebuffer {
            base: 0x8000_0000,
            bytes: 1280 * 800 * 4,
            width: 1280,
            height: 800,
            stride: 1280,
            order: PixelOrder::Bgr,
        }
    }

    fn handoff() -> Handoff {
        Handoff {
            memmap: 0x20_0000,
            memmap_bytes: 48 * 3,
            desc_size: 48,
            desc_version: 1,
            framebuffer: Some(fb()),
        }
    }

    fn page_at(addr: u64, h: &Handoff, cmdline: &[u8]) -> Fake {
        let mut page = [0u8; HANDOFF_BYTES];
        h.encode(addr, Some(0xe_0000), None, cmdline, &mut page)
            .unwrap();
        Fake {
            base: addr,
            bytes: page.to_vec(),
        }
    }

    #[test]
    fn round_trip_and_start_info() {
        let h = handoff();
        let mem = page_at(0x9000, &h, b"rhea.cpus=2");
        assert_eq!(Handoff::decode(&mem, 0x9000), Ok(h));
        // The start info is the PVH parser's: v0, command line inside the page, RSDP.
        assert_eq!(get32(&mem.bytes, 0), PVH_MAGIC);
        assert_eq!(get32(&mem.bytes, 4), 0);
        assert_eq!(get64(&mem.bytes, 24), 0x9000 + CMDLINE_OFFSET as u64);
        assert_eq!(get64(&mem.bytes, 32), 0xe_0000);
        assert_eq!(
            &mem.bytes[CMDLINE_OFFSET..CMDLINE_OFFSET + 12],
            b"rhea.cpus=2\0"
        );
        let no_fb = Handoff {
            framebuffer: None,
            ..h
        };
        assert_eq!(
            Handoff::decode(&page_at(0x9000, &no_fb, b""), 0x9000),
            Ok(no_fb)
        );
    }

    #[test]
    fn the_initrd_is_the_start_infos_first_module() {
        let ram = [E820Entry {
            addr: 0,
            size: 0x1000_0000,
            kind: 1,
        }];
        let parse = |initrd| {
            let mut page = [0u8; HANDOFF_BYTES];
            handoff()
                .encode(0x9000, None, initrd, b"", &mut page)
                .unwrap();
            let mem = Fake {
                base: 0x9000,
                bytes: page.to_vec(),
            };
            assert_eq!(Handoff::decode(&mem, 0x9000), Ok(handoff()));
            crate::pvh::parse_with(&mem, 0x9000, Some(&ram)).map(|i| i.initrd)
        };
        assert_eq!(
            parse(Some((0x40_0000, 12_345))),
            Ok(Some((0x40_0000, 12_345)))
        );
        assert_eq!(parse(None), Ok(None));
        assert_eq!(parse(Some((0x40_0000, 0))), Ok(None), "an empty file: none");
    }

    #[test]
    fn corrupt_handoffs_are_refused() {
        let good = page_at(0x9000, &handoff(), b"");
        let with = |off: usize, v: &[u8]| {
            let mut m = Fake {
                base: good.base,
                bytes: good.bytes.clone(),
            };
            m.bytes[off..off + v.len()].copy_from_slice(v);
            Handoff::decode(&m, 0x9000)
        };
        assert!(matches!(
            with(0, &[0; 4]),
            Err(HandoffError::BadStartInfo { .. })
        ));
        assert!(matches!(
            with(EXT_OFFSET, b"RHEAUEFX"),
            Err(HandoffError::BadMagic { .. })
        ));
        assert_eq!(
            with(EXT_OFFSET + 8, &2u32.to_le_bytes()),
            Err(HandoffError::BadVersion { found: 2 })
        );
        for size in [0u32, 24, 44] {
            assert_eq!(
                with(EXT_OFFSET + 32, &size.to_le_bytes()),
                Err(HandoffError::BadDescriptorSize { size })
            );
        }
        for bytes in [0u64, 47, 48 * 1025] {
            assert!(matches!(
                with(EXT_OFFSET + 24, &bytes.to_le_bytes()),
                Err(HandoffError::BadMapLength { .. })
            ));
        }
        // Geometry that does not fit the buffer, stride below width, zero size, unknown format.
        assert_eq!(
            with(EXT_OFFSET + 48, &16u64.to_le_bytes()),
            Err(HandoffError::BadFramebuffer)
        );
        assert_eq!(
            with(EXT_OFFSET + 64, &100u32.to_le_bytes()),
            Err(HandoffError::BadFramebuffer)
        );
        assert_eq!(
            with(EXT_OFFSET + 56, &0u32.to_le_bytes()),
            Err(HandoffError::BadFramebuffer)
        );
        assert_eq!(
            with(EXT_OFFSET + 68, &3u32.to_le_bytes()),
            Err(HandoffError::BadFramebuffer)
        );
        assert_eq!(
            with(EXT_OFFSET + 40, &u64::MAX.to_le_bytes()),
            Err(HandoffError::BadFramebuffer)
        );
        // A page that is not there.
        assert_eq!(
            Handoff::decode(&good, 0x1000),
            Err(HandoffError::Unreadable { addr: 0x1000 })
        );
        // A command line the kernel would cut, or with a NUL in it, is refused when written.
        let mut page = [0u8; HANDOFF_BYTES];
        assert!(
            handoff()
                .encode(0, None, None, &[b'a'; MAX_CMDLINE], &mut page)
                .is_err()
        );
        assert!(handoff().encode(0, None, None, b"a\0b", &mut page).is_err());
        assert!(
            handoff()
                .encode(0, None, None, &[b'a'; MAX_CMDLINE - 1], &mut page)
                .is_ok()
        );
    }

    /// A UEFI map in memory at 0x1000, descriptors of `stride` bytes.
    fn map(stride: usize, descs: &[(u32, u64, u64, u64)]) -> Fake {
        let mut bytes = vec![0u8; stride * descs.len()];
        for (i, &(kind, start, pages, attr)) in descs.iter().enumerate() {
            let d = &mut bytes[i * stride..];
            put32(d, 0, kind);
            put64(d, 8, start);
            put64(d, 16, 0xdead_0000); // virtual start: ignored
            put64(d, 24, pages);
            put64(d, 32, attr);
        }
        Fake {
            base: 0x1000,
            bytes,
        }
    }

    fn convert(
        stride: usize,
        descs: &[(u32, u64, u64, u64)],
    ) -> Result<Vec<E820Entry>, MemmapError> {
        let m = map(stride, descs);
        e820_from_uefi(&m, 0x1000, m.bytes.len() as u64, stride as u32)
            .map(|e| e.entries().to_vec())
    }

    fn e(addr: u64, size: u64, kind: u32) -> E820Entry {
        E820Entry { addr, size, kind }
    }

    #[test]
    fn an_ovmf_like_map_merges_and_sorts() {
        // Unsorted on purpose; boot services, loader and conventional memory merge into RAM.
        let descs = [
            (efi::CONVENTIONAL, 0x10_0000, 0x700, 0xf),
            (efi::BOOT_SERVICES_CODE, 0, 0xa0, 0xf),
            (efi::LOADER_CODE, 0x80_0000, 0x10, 0xf),
            (efi::ACPI_NVS, 0x80_0000 + 0x10 * 4096, 4, 0xf),
            (6, 0x80_0000 + 0x14 * 4096, 2, 0x8000_0000_0000_000f),
            (efi::CONVENTIONAL, 0x90_0000, 0x100, 0xf),
            (efi::BOOT_SERVICES_DATA, 0xa0_0000, 0x100, 0xf),
            (11, 0xffc0_0000, 0x400, 0x8000_0000_0000_0001), // MMIO (flash)
            (
                efi::CONVENTIONAL,
                0x1_0000_0000,
                0x4_0000,
                efi::ATTR_SPECIFIC_PURPOSE,
            ),
        ];
        for stride in [40, 48, 64] {
            assert_eq!(
                convert(stride, &descs).unwrap(),
                vec![
                    e(0, 0xa_0000, 1),
                    e(0x10_0000, 0x710_000, 1),
                    e(0x81_0000, 0x4000, 4),
                    e(0x81_4000, 0x2000, 2),
                    e(0x90_0000, 0x20_0000, 1),
                    // Neighbouring reserved ranges (flash, specific-purpose RAM) merge too.
                    e(0xffc0_0000, 0x4040_0000, 2),
                ],
                "stride {stride}"
            );
        }
    }

    #[test]
    fn malformed_maps_are_refused() {
        let ram = efi::CONVENTIONAL;
        assert_eq!(
            convert(48, &[(ram, 0x1001, 1, 0)]),
            Err(MemmapError::BadDescriptor {
                index: 0,
                start: 0x1001,
                pages: 1
            })
        );
        assert!(matches!(
            convert(48, &[(ram, 0x1000, 0, 0)]),
            Err(MemmapError::BadDescriptor { .. })
        ));
        assert!(matches!(
            convert(48, &[(ram, 0xffff_ffff_ffff_f000, 2, 0)]),
            Err(MemmapError::BadDescriptor { .. })
        ));
        assert!(matches!(
            convert(48, &[(ram, 0, 1 << 60, 0)]),
            Err(MemmapError::BadDescriptor { .. })
        ));
        // Overlap, same start and partial, in either order.
        assert!(matches!(
            convert(48, &[(ram, 0x1000, 4, 0), (2, 0x1000, 1, 0)]),
            Err(MemmapError::Overlap { .. })
        ));
        assert!(matches!(
            convert(48, &[(ram, 0x3000, 4, 0), (ram, 0x1000, 4, 0)]),
            Err(MemmapError::Overlap { .. })
        ));
        // Too many distinct regions: alternating kinds.
        let many: Vec<_> = (0..MAX_E820 as u64 + 1)
            .map(|i| (if i % 2 == 0 { ram } else { 0 }, i * 4096, 1, 0))
            .collect();
        assert_eq!(convert(48, &many), Err(MemmapError::TooManyRegions));
        // A map running past readable memory.
        let m = map(48, &[(ram, 0, 1, 0)]);
        assert_eq!(
            e820_from_uefi(&m, 0x1000, 96, 48).map(|_| ()),
            Err(MemmapError::Unreadable { index: 1 })
        );
    }

    /// A minimal ELF: header, then `phdrs` program headers right after it.
    fn elf(entry: u64, phdrs: &[(u32, u32, u64, u64, u64, u64)], body: usize) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56 * phdrs.len() + body];
        b[0..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[16] = 2;
        b[18] = 62;
        put64(&mut b, 24, entry);
        put64(&mut b, 32, 64);
        b[54] = 56;
        b[56] = phdrs.len() as u8;
        for (i, &(kind, flags, off, paddr, filesz, memsz)) in phdrs.iter().enumerate() {
            let h = &mut b[64 + i * 56..];
            put32(h, 0, kind);
            put32(h, 4, flags);
            put64(h, 8, off);
            put64(h, 16, paddr);
            put64(h, 24, paddr);
            put64(h, 32, filesz);
            put64(h, 40, memsz);
        }
        b
    }

    #[test]
    fn a_kernel_elf_is_planned() {
        let img = elf(
            0x10_0100,
            &[
                (1, 5, 0, 0x10_0000, 0x100, 0x2000),
                (4, 4, 0, 0, 0, 0), // PT_NOTE: ignored
                (1, 6, 0x100, 0x10_2000, 0x10, 0x5000),
            ],
            0x200,
        );
        let plan = plan_load(&img).unwrap();
        assert_eq!(plan.len, 2);
        assert_eq!(
            (plan.start, plan.end, plan.entry),
            (0x10_0000, 0x10_7000, 0x10_0100)
        );
        assert_eq!(
            plan.segments[1],
            Segment {
                paddr: 0x10_2000,
                offset: 0x100,
                file_bytes: 0x10,
                mem_bytes: 0x5000
            }
        );
    }

    #[test]
    fn bad_kernel_elves_are_refused() {
        let text = |paddr, memsz| (1, 5, 0u64, paddr, 0x10u64, memsz);
        assert_eq!(plan_load(b"MZ"), Err(ElfError::NotX86_64Executable));
        let mut arm = elf(0x10_0000, &[text(0x10_0000, 0x1000)], 0x10);
        arm[18] = 183;
        assert_eq!(plan_load(&arm), Err(ElfError::NotX86_64Executable));
        let mut cut = elf(0x10_0000, &[text(0x10_0000, 0x1000)], 0x10);
        cut.truncate(100);
        assert_eq!(plan_load(&cut), Err(ElfError::BadProgramHeaders));
        assert_eq!(
            plan_load(&elf(0x10_0000, &[(4, 4, 0, 0, 0, 0)], 0)),
            Err(ElfError::SegmentCount { count: 0 })
        );
        assert_eq!(
            plan_load(&elf(
                0x10_0000,
                &[(1, 5, 0, 0x10_0000, 0x10_0000, 0x10_0000)],
                0
            )),
            Err(ElfError::SegmentOutsideFile { index: 0 })
        );
        assert_eq!(
            plan_load(&elf(0x10_0000, &[(1, 5, 0, 0x10_0000, 0x20, 0x10)], 0x20)),
            Err(ElfError::SegmentOutsideFile { index: 0 })
        );
        assert_eq!(
            plan_load(&elf(0x8000, &[text(0x8000, 0x1000)], 0x10)),
            Err(ElfError::SegmentAddress {
                index: 0,
                paddr: 0x8000
            })
        );
        assert!(matches!(
            plan_load(&elf(0x10_0000, &[text(0xffff_f000, 0x2000)], 0x10)),
            Err(ElfError::SegmentAddress { .. })
        ));
        assert_eq!(
            plan_load(&elf(
                0x10_0000,
                &[text(0x10_0000, 0x2000), text(0x10_1000, 0x1000)],
                0x10
            )),
            Err(ElfError::SegmentsOverlap)
        );
        // Entry in a data segment, or nowhere.
        assert_eq!(
            plan_load(&elf(0x10_0000, &[(1, 6, 0, 0x10_0000, 0x10, 0x1000)], 0x10)),
            Err(ElfError::EntryOutsideText { entry: 0x10_0000 })
        );
        assert_eq!(
            plan_load(&elf(0x20_0000, &[text(0x10_0000, 0x1000)], 0x10)),
            Err(ElfError::EntryOutsideText { entry: 0x20_0000 })
        );
    }

    fn cmdline(opts: &str, config: Option<&[u8]>) -> Result<(String, CmdlineSource), CmdlineError> {
        let wide: Vec<u16> = opts.encode_utf16().chain([0, 0x41]).collect();
        let mut out = [0u8; MAX_CMDLINE];
        choose_cmdline(&wide, config, &mut out)
            .map(|(n, src)| (String::from_utf8(out[..n].to_vec()).unwrap(), src))
    }

    #[test]
    fn the_command_line_comes_from_options_then_the_config_file() {
        use CmdlineSource::{ConfigFile, LoadOptions};
        let cfg: &[u8] = b"\xef\xbb\xbf# Rhea\n\n  rhea.cpus=2 quiet \nignored\n";
        assert_eq!(
            cmdline("rhea.cpus=4", Some(cfg)).unwrap(),
            ("rhea.cpus=4".into(), LoadOptions)
        );
        // The shell's argv[0] is dropped; alone, it falls through to the file.
        assert_eq!(
            cmdline("BOOTX64.EFI rhea.cpus=1", Some(cfg)).unwrap(),
            ("rhea.cpus=1".into(), LoadOptions)
        );
        assert_eq!(
            cmdline("fs0:\\EFI\\BOOT\\BOOTX64.efi", Some(cfg)).unwrap(),
            ("rhea.cpus=2 quiet".into(), ConfigFile)
        );
        // Binary load options (a boot entry's device data) are not text: the file is used.
        let mut out = [0u8; MAX_CMDLINE];
        assert_eq!(
            choose_cmdline(&[0x0001, 0xbeef, 0x0200], Some(b"x=1"), &mut out),
            Ok((3, ConfigFile))
        );
        assert_eq!(
            cmdline("", None).unwrap(),
            (String::new(), CmdlineSource::None)
        );
        assert_eq!(
            cmdline("", Some(b"# only a comment\n")).unwrap(),
            (String::new(), CmdlineSource::None)
        );
        assert_eq!(cmdline("", Some(b"a\0b")), Err(CmdlineError::NotText));
        assert_eq!(cmdline("", Some(&[0xff, 0xfe])), Err(CmdlineError::NotText));
        let long = "x".repeat(MAX_CMDLINE);
        assert_eq!(
            cmdline("", Some(long.as_bytes())),
            Err(CmdlineError::TooLong { bytes: MAX_CMDLINE })
        );
        assert_eq!(
            cmdline(&long, None),
            Err(CmdlineError::TooLong { bytes: MAX_CMDLINE })
        );
        let longest = "x".repeat(MAX_CMDLINE - 1);
        assert_eq!(
            cmdline("", Some(longest.as_bytes())).unwrap().0.len(),
            MAX_CMDLINE - 1
        );
    }
}
