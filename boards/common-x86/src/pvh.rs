//! The PVH boot protocol's `hvm_start_info` (Xen `public/arch-x86/hvm/start_info.h`), parsed in
//! two steps: raw little-endian fields read through [`PhysMemory`], then a checked
//! [`StartInfo`] whose every pointer and region was validated. Host-tested with crafted
//! inputs; nothing here touches memory directly.

use core::fmt;
use rhea_hal::{PAGE_SIZE, PhysAddr};
use rhea_mm::{MemoryMap, MemoryMapError, RegionKind};

/// `hvm_start_info.magic`: "xEn3" with the top bit of each byte cleared.
pub const MAGIC: u32 = 0x336e_c578;
/// Size of the version-1 structure, which added the memory map.
const START_INFO_V1_BYTES: usize = 56;
/// Size of one `hvm_memmap_table_entry`.
const MEMMAP_ENTRY_BYTES: usize = 24;
/// More memory-map entries than this is not a real machine.
pub const MAX_MEMMAP_ENTRIES: u32 = 128;
/// End of the PC's legacy memory area (conventional memory, VGA, option and BIOS ROMs).
pub const LEGACY_AREA_END: u64 = 0x10_0000;
/// Longest command line kept.
pub const MAX_CMDLINE: usize = 1024;

/// `hvm_memmap_table_entry.type` values (the E820 types).
mod e820 {
    pub(super) const RAM: u32 = 1;
    pub(super) const ACPI: u32 = 3;
    pub(super) const NVS: u32 = 4;
}

/// How the parser reads physical memory. The board implements it over its boot identity map;
/// tests over a byte array.
pub trait PhysMemory {
    /// Fills `buf` from physical address `paddr`; `false` if that range cannot be read.
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool;
}

/// Why a start info was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PvhError {
    /// A structure at this address could not be read at all.
    Unreadable { what: &'static str, addr: u64 },
    /// `magic` is wrong: this is not a PVH start info.
    BadMagic { found: u32 },
    /// Version 0 carries no memory map, and Rhea needs one.
    NoMemoryMap { version: u32 },
    /// Zero or too many memory-map entries.
    BadEntryCount { entries: u32 },
    /// The map itself is inconsistent.
    MemoryMap(MemoryMapError),
    /// A pointer in the start info lies outside every region of the memory map.
    PointerOutsideMemory { what: &'static str, addr: u64 },
    /// The command line has no terminating NUL within [`MAX_CMDLINE`] bytes or is not UTF-8.
    BadCmdline,
}

impl fmt::Display for PvhError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Unreadable { what, addr } => write!(f, "cannot read the {what} at {addr:#x}"),
            Self::BadMagic { found } => write!(f, "magic is {found:#x}, expected {MAGIC:#x}"),
            Self::NoMemoryMap { version } => write!(
                f,
                "version {version} has no memory map (version 1 or later needed)"
            ),
            Self::BadEntryCount { entries } => write!(
                f,
                "{entries} memory-map entries (1..={MAX_MEMMAP_ENTRIES} expected)"
            ),
            Self::MemoryMap(e) => write!(f, "bad memory map: {e}"),
            Self::PointerOutsideMemory { what, addr } => write!(
                f,
                "the {what} pointer {addr:#x} lies outside the memory map"
            ),
            Self::BadCmdline => write!(
                f,
                "the command line is unterminated, longer than {MAX_CMDLINE} bytes, or not UTF-8"
            ),
        }
    }
}

/// A validated start info.
#[derive(Debug)]
pub struct StartInfo {
    /// The validated memory map.
    pub memory_map: MemoryMap,
    cmdline: [u8; MAX_CMDLINE],
    cmdline_len: usize,
    /// Physical address of the ACPI RSDP, if given.
    pub rsdp: Option<u64>,
    /// The first module (QEMU's `-initrd`, Xen's ramdisk) as (address, bytes): inside one
    /// usable region of the map. `None` when there is none or it is empty.
    pub initrd: Option<(u64, u64)>,
    /// Bytes of the module past the end of the usable region it starts in, cut off.
    pub initrd_cut: u64,
}

impl StartInfo {
    /// The command line (empty when none was given).
    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from(u32_at(b, off)) | (u64::from(u32_at(b, off + 4)) << 32)
}

/// A memory-map entry given by other means than the start info (Xen's `XENMEM_memory_map`,
/// for a version-0 start info), in e820 terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// e820 type (1 RAM, 3 ACPI, 4 NVS, else reserved).
    pub kind: u32,
}

fn region_kind(kind: u32) -> RegionKind {
    match kind {
        e820::RAM => RegionKind::Usable,
        e820::ACPI => RegionKind::AcpiReclaimable,
        e820::NVS => RegionKind::AcpiNvs,
        _ => RegionKind::Reserved,
    }
}

/// Reads and validates the start info at `addr`.
pub fn parse(mem: &impl PhysMemory, addr: u64) -> Result<StartInfo, PvhError> {
    parse_with(mem, addr, None)
}

/// Like [`parse`], but a version-0 start info (which has no memory map: Xen 4.17's PVH dom0)
/// takes its map from `fallback` when one is given.
pub fn parse_with(
    mem: &impl PhysMemory,
    addr: u64,
    fallback: Option<&[E820Entry]>,
) -> Result<StartInfo, PvhError> {
    let mut hdr = [0u8; START_INFO_V1_BYTES];
    // Version 0 is 48 bytes; read those first so a v0 structure at the end of memory works.
    if !mem.read(addr, &mut hdr[..48]) {
        return Err(PvhError::Unreadable {
            what: "start info",
            addr,
        });
    }
    let magic = u32_at(&hdr, 0);
    if magic != MAGIC {
        return Err(PvhError::BadMagic { found: magic });
    }
    let version = u32_at(&hdr, 4);
    let external = match (version, fallback) {
        (0, Some(entries)) => Some(entries),
        (0, None) => return Err(PvhError::NoMemoryMap { version }),
        _ => None,
    };
    // Addresses are summed with `checked_add` throughout: a `PhysMemory` may well be
    // readable up to the last byte of the address space (found by `cargo xtask fuzz pvh`).
    if external.is_none()
        && !addr
            .checked_add(48)
            .is_some_and(|at| mem.read(at, &mut hdr[48..]))
    {
        return Err(PvhError::Unreadable {
            what: "start info",
            addr,
        });
    }
    let nr_modules = u32_at(&hdr, 12);
    let modlist = u64_at(&hdr, 16);
    let cmdline_addr = u64_at(&hdr, 24);
    let rsdp = u64_at(&hdr, 32);
    let memmap_addr = u64_at(&hdr, 40);
    let entries = match external {
        Some(list) => u32::try_from(list.len()).unwrap_or(u32::MAX),
        None => u32_at(&hdr, 48),
    };
    if entries == 0 || entries > MAX_MEMMAP_ENTRIES {
        return Err(PvhError::BadEntryCount { entries });
    }

    let mut map = MemoryMap::new();
    if let Some(list) = external {
        for e in list {
            map.push(e.addr, e.size, region_kind(e.kind))
                .map_err(PvhError::MemoryMap)?;
        }
    }
    for i in 0..u64::from(if external.is_some() { 0 } else { entries }) {
        let mut e = [0u8; MEMMAP_ENTRY_BYTES];
        let at = memmap_addr.checked_add(i * MEMMAP_ENTRY_BYTES as u64);
        if !at.is_some_and(|at| mem.read(at, &mut e)) {
            return Err(PvhError::Unreadable {
                what: "memory map",
                addr: memmap_addr,
            });
        }
        map.push(u64_at(&e, 0), u64_at(&e, 8), region_kind(u32_at(&e, 16)))
            .map_err(PvhError::MemoryMap)?;
    }
    let map = map.finish().map_err(PvhError::MemoryMap)?;

    // Every pointer must land inside the machine's memory: a region of the map, or the PC's
    // legacy area below 1 MiB, which every PC backs with memory but firmware often leaves out
    // of the map (QEMU's qboot puts the start info and its map in the BIOS segment there).
    let inside = |what, a: u64, len: u64| {
        let legacy = a.checked_add(len).is_some_and(|end| end <= LEGACY_AREA_END);
        if legacy || map.region_containing(PhysAddr(a), len).is_some() {
            Ok(())
        } else {
            Err(PvhError::PointerOutsideMemory { what, addr: a })
        }
    };
    if external.is_some() {
        inside("start info", addr, 48)?;
    } else {
        inside("start info", addr, START_INFO_V1_BYTES as u64)?;
        inside(
            "memory map",
            memmap_addr,
            u64::from(entries) * MEMMAP_ENTRY_BYTES as u64,
        )?;
    }
    let mut initrd = None;
    let mut initrd_cut = 0;
    if nr_modules > 0 {
        inside("module list", modlist, u64::from(nr_modules) * 32)?;
        // hvm_modlist_entry: paddr, size, cmdline_paddr, reserved (u64 each).
        let mut m = [0u8; 32];
        if !mem.read(modlist, &mut m) {
            return Err(PvhError::Unreadable {
                what: "module list",
                addr: modlist,
            });
        }
        let (paddr, size) = (u64_at(&m, 0), u64_at(&m, 8));
        if size > 0 {
            // It must start in usable RAM. QEMU's microvm with qboot puts the initrd against
            // the top of low RAM and then reserves that RAM's last page for the firmware: a
            // tail past the usable region is cut off (and reported), so the archive's own
            // checks see a truncation if anything of it was there.
            match map.region_containing(PhysAddr(paddr), 1) {
                Some(r) if r.kind == RegionKind::Usable => {
                    let room = r.end().as_u64() - paddr;
                    initrd = Some((paddr, size.min(room)));
                    initrd_cut = size.saturating_sub(room);
                }
                _ => {
                    return Err(PvhError::PointerOutsideMemory {
                        what: "first module (initrd)",
                        addr: paddr,
                    });
                }
            }
        }
    }
    if rsdp != 0 {
        inside("ACPI RSDP", rsdp, 20)?;
    }

    let mut cmdline = [0u8; MAX_CMDLINE];
    let mut cmdline_len = 0;
    if cmdline_addr != 0 {
        inside("command line", cmdline_addr, 1)?;
        // Read byte-wise up to the NUL: the string may end right before unreadable memory.
        loop {
            if cmdline_len == MAX_CMDLINE {
                return Err(PvhError::BadCmdline);
            }
            let mut b = [0u8];
            let at = cmdline_addr.checked_add(cmdline_len as u64);
            if !at.is_some_and(|at| mem.read(at, &mut b)) {
                return Err(PvhError::Unreadable {
                    what: "command line",
                    addr: cmdline_addr,
                });
            }
            if b[0] == 0 {
                break;
            }
            cmdline[cmdline_len] = b[0];
            cmdline_len += 1;
        }
        if core::str::from_utf8(&cmdline[..cmdline_len]).is_err() {
            return Err(PvhError::BadCmdline);
        }
    }
    Ok(StartInfo {
        memory_map: map,
        cmdline,
        cmdline_len,
        rsdp: (rsdp != 0).then_some(rsdp),
        initrd,
        initrd_cut,
    })
}

/// A page for the AP trampoline: the lowest usable page above page 0 that is not the start
/// info's page, below the EBDA (0x9f000). Lowest, so that [`low_reserved_end`] keeps only the
/// bottom of low memory from the frame allocator.
pub fn trampoline_page(map: &MemoryMap, start_info: u64) -> Option<u64> {
    let start_info_page = start_info & !(PAGE_SIZE - 1);
    (1..0x9f_u64)
        .map(|n| n * PAGE_SIZE)
        .filter(|&p| p != start_info_page)
        .find(|&p| {
            map.region_containing(PhysAddr(p), PAGE_SIZE)
                .is_some_and(|r| r.kind == RegionKind::Usable)
        })
}

/// The end of the reservation at address 0: past the trampoline's page, or past page 0 when
/// there is none. Early init picks the same page ([`trampoline_page`] is deterministic).
pub fn low_reserved_end(map: &MemoryMap, start_info: u64) -> u64 {
    trampoline_page(map, start_info).map_or(PAGE_SIZE, |p| p + PAGE_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1 MiB of fake physical memory starting at 0.
    struct Fake(Vec<u8>);

    impl PhysMemory for Fake {
        fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
            let start = paddr as usize;
            match self.0.get(start..start + buf.len()) {
                Some(s) => {
                    buf.copy_from_slice(s);
                    true
                }
                None => false,
            }
        }
    }

    const INFO: u64 = 0x6000;
    const MAP: u64 = 0x7000;
    const CMD: u64 = 0x8000;

    fn put32(m: &mut Fake, at: u64, v: u32) {
        m.0[at as usize..at as usize + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn put64(m: &mut Fake, at: u64, v: u64) {
        m.0[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// A well-formed start info like QEMU's: low RAM, a hole, RAM from 1 MiB.
    fn good() -> Fake {
        let mut m = Fake(vec![0; 1 << 20]);
        put32(&mut m, INFO, MAGIC);
        put32(&mut m, INFO + 4, 1);
        put64(&mut m, INFO + 24, CMD);
        put64(&mut m, INFO + 40, MAP);
        put32(&mut m, INFO + 48, 3);
        let entries = [
            (0u64, 0x9_fc00u64, 1u32),
            (0xf_0000, 0x1_0000, 2),
            (0x10_0000, 0x7f0_0000, 1),
        ];
        for (i, (a, l, t)) in entries.iter().enumerate() {
            let at = MAP + 24 * i as u64;
            put64(&mut m, at, *a);
            put64(&mut m, at + 8, *l);
            put32(&mut m, at + 16, *t);
        }
        m.0[CMD as usize..CMD as usize + 12].copy_from_slice(b"console=com1");
        m
    }

    #[test]
    fn accepts_a_qemu_like_start_info() {
        let info = parse(&good(), INFO).unwrap();
        assert_eq!(info.memory_map.regions().len(), 3);
        assert_eq!(info.memory_map.usable_bytes(), 0x9_fc00 + 0x7f0_0000);
        assert_eq!(info.cmdline(), "console=com1");
        assert_eq!(info.rsdp, None);
    }

    #[test]
    fn the_first_module_is_the_initrd() {
        const MODS: u64 = 0x9000;
        let with_module = |paddr: u64, size: u64| {
            let mut m = good();
            put32(&mut m, INFO + 12, 2);
            put64(&mut m, INFO + 16, MODS);
            put64(&mut m, MODS, paddr);
            put64(&mut m, MODS + 8, size);
            // A second module is ignored.
            put64(&mut m, MODS + 32, 0x20_0000);
            put64(&mut m, MODS + 40, 4096);
            parse(&m, INFO)
        };
        let info = with_module(0x40_0000, 0x1_2345).unwrap();
        assert_eq!(
            (info.initrd, info.initrd_cut),
            (Some((0x40_0000, 0x1_2345)), 0)
        );
        // None given, or empty: no initrd.
        assert_eq!(parse(&good(), INFO).unwrap().initrd, None);
        assert_eq!(with_module(0x40_0000, 0).unwrap().initrd, None);
        // Past the end of its usable region (microvm's top page): cut to the region.
        let end = 0x10_0000 + 0x7f0_0000;
        let info = with_module(end - 0x800, 0x1000).unwrap();
        assert_eq!(
            (info.initrd, info.initrd_cut),
            (Some((end - 0x800, 0x800)), 0x800)
        );
        // Starting outside usable RAM (the hole, reserved, past the end): refused.
        for at in [0xa_0000, 0xf_8000, 0x1000_0000, u64::MAX - 10] {
            assert_eq!(
                with_module(at, 16).unwrap_err(),
                PvhError::PointerOutsideMemory {
                    what: "first module (initrd)",
                    addr: at
                },
                "{at:#x}"
            );
        }
    }

    #[test]
    fn rejects_bad_magic_and_version_0() {
        let mut m = good();
        put32(&mut m, INFO, 0x1234_5678);
        assert_eq!(
            parse(&m, INFO).unwrap_err(),
            PvhError::BadMagic { found: 0x1234_5678 }
        );
        let mut m = good();
        put32(&mut m, INFO + 4, 0);
        assert_eq!(
            parse(&m, INFO).unwrap_err(),
            PvhError::NoMemoryMap { version: 0 }
        );
    }

    #[test]
    fn version_0_takes_the_map_given_separately() {
        let mut m = good();
        put32(&mut m, INFO + 4, 0);
        // Junk where a v1 entry count would be: must not be read for a v0 structure.
        put32(&mut m, INFO + 48, 0xdead);
        let xen_map = [
            E820Entry {
                addr: 0,
                size: 0x9_f000,
                kind: 1,
            },
            E820Entry {
                addr: 0x10_0000,
                size: 0x7f0_0000,
                kind: 1,
            },
            E820Entry {
                addr: 0xfc00_0000,
                size: 0x100_0000,
                kind: 2,
            },
        ];
        let info = parse_with(&m, INFO, Some(&xen_map)).unwrap();
        assert_eq!(info.memory_map.regions().len(), 3);
        assert_eq!(info.memory_map.usable_bytes(), 0x9_f000 + 0x7f0_0000);
        assert_eq!(info.cmdline(), "console=com1");
        assert_eq!(
            parse_with(&m, INFO, Some(&[])).unwrap_err(),
            PvhError::BadEntryCount { entries: 0 }
        );
        // A version-1 start info keeps its own map even when one is offered.
        let info = parse_with(&good(), INFO, Some(&xen_map[..1])).unwrap();
        assert_eq!(info.memory_map.regions().len(), 3);
    }

    #[test]
    fn rejects_no_entries_and_absurd_counts() {
        let mut m = good();
        put32(&mut m, INFO + 48, 0);
        assert_eq!(
            parse(&m, INFO).unwrap_err(),
            PvhError::BadEntryCount { entries: 0 }
        );
        put32(&mut m, INFO + 48, 100_000);
        assert_eq!(
            parse(&m, INFO).unwrap_err(),
            PvhError::BadEntryCount { entries: 100_000 }
        );
    }

    #[test]
    fn rejects_overlapping_and_absurd_regions() {
        let mut m = good();
        put64(&mut m, MAP + 24 * 2, 0x9_0000); // third entry now overlaps the first
        assert!(matches!(
            parse(&m, INFO).unwrap_err(),
            PvhError::MemoryMap(MemoryMapError::Overlap { .. })
        ));
        let mut m = good();
        put64(&mut m, MAP + 24 * 2 + 8, u64::MAX); // wraps
        assert!(matches!(
            parse(&m, INFO).unwrap_err(),
            PvhError::MemoryMap(MemoryMapError::Wraps { .. })
        ));
        let mut m = good();
        put64(&mut m, MAP + 24 * 2, 1 << 60); // beyond any physical address
        assert!(matches!(
            parse(&m, INFO).unwrap_err(),
            PvhError::MemoryMap(MemoryMapError::BeyondPhysicalLimit { .. })
        ));
        let mut m = good();
        put64(&mut m, MAP + 8, 0); // empty region
        assert!(matches!(
            parse(&m, INFO).unwrap_err(),
            PvhError::MemoryMap(MemoryMapError::EmptyRegion { .. })
        ));
        let mut m = good();
        for i in [0u64, 2] {
            put32(&mut m, MAP + 24 * i + 16, 2); // no RAM left
        }
        assert_eq!(
            parse(&m, INFO).unwrap_err(),
            PvhError::MemoryMap(MemoryMapError::NoUsableMemory)
        );
    }

    #[test]
    fn rejects_pointers_outside_memory() {
        let mut m = good();
        put64(&mut m, INFO + 24, 0x800_0000); // command line right after the end of RAM
        assert_eq!(
            parse(&m, INFO).unwrap_err(),
            PvhError::PointerOutsideMemory {
                what: "command line",
                addr: 0x800_0000
            }
        );
        let mut m = good();
        put64(&mut m, INFO + 32, 0xfee0_0000); // RSDP nowhere
        assert_eq!(
            parse(&m, INFO).unwrap_err(),
            PvhError::PointerOutsideMemory {
                what: "ACPI RSDP",
                addr: 0xfee0_0000
            }
        );
        let mut m = good();
        put64(&mut m, INFO + 40, 0x4000_0000); // memory map beyond readable memory
        assert_eq!(
            parse(&m, INFO).unwrap_err(),
            PvhError::Unreadable {
                what: "memory map",
                addr: 0x4000_0000
            }
        );
        assert_eq!(
            parse(&good(), 0x20_0000).unwrap_err(),
            PvhError::Unreadable {
                what: "start info",
                addr: 0x20_0000
            }
        );
    }

    #[test]
    fn accepts_pointers_into_the_legacy_bios_area() {
        // qboot places the start info and its map in the BIOS segment, outside the E820 map.
        let mut m = good();
        let (info, map) = (0xf_59c0u64, 0xc_feb0u64);
        m.0.copy_within(INFO as usize..INFO as usize + 56, info as usize);
        m.0.copy_within(MAP as usize..MAP as usize + 72, map as usize);
        put64(&mut m, info + 40, map);
        assert!(parse(&m, info).is_ok());
    }

    #[test]
    fn rejects_unterminated_and_non_utf8_command_lines() {
        let mut m = good();
        m.0[CMD as usize..CMD as usize + 2 * MAX_CMDLINE].fill(b'x');
        assert_eq!(parse(&m, INFO).unwrap_err(), PvhError::BadCmdline);
        let mut m = good();
        m.0[CMD as usize] = 0xff;
        assert_eq!(parse(&m, INFO).unwrap_err(), PvhError::BadCmdline);
    }

    /// Memory readable up to the last byte of the address space, as a `PhysMemory` may be.
    struct Top(Vec<u8>);

    impl Top {
        fn base(&self) -> u64 {
            u64::MAX - (self.0.len() as u64 - 1)
        }
    }

    impl PhysMemory for Top {
        fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
            let Some(start) = paddr.checked_sub(self.base()) else {
                return false;
            };
            match self.0.get(start as usize..start as usize + buf.len()) {
                Some(s) => {
                    buf.copy_from_slice(s);
                    true
                }
                None => false,
            }
        }
    }

    /// A start info, memory map or command line in the last bytes of the address space: the
    /// next address does not exist, and summing it overflowed (`cargo xtask fuzz pvh`, a
    /// start info in the last 48 bytes with version 1).
    #[test]
    fn structures_at_the_top_of_the_address_space() {
        let mut top = Top(vec![0; 48]);
        top.0[..4].copy_from_slice(&MAGIC.to_le_bytes());
        top.0[4..8].copy_from_slice(&1u32.to_le_bytes());
        let at = top.base();
        assert_eq!(
            parse(&top, at).unwrap_err(),
            PvhError::Unreadable {
                what: "start info",
                addr: at
            }
        );
        // A map whose second entry would start past 2^64.
        let mut top = Top(vec![0; 56 + 24]);
        top.0[..4].copy_from_slice(&MAGIC.to_le_bytes());
        top.0[4..8].copy_from_slice(&1u32.to_le_bytes());
        let map = top.base() + 56;
        top.0[40..48].copy_from_slice(&map.to_le_bytes());
        top.0[48..52].copy_from_slice(&2u32.to_le_bytes());
        top.0[56..64].copy_from_slice(&0x1000u64.to_le_bytes());
        top.0[64..72].copy_from_slice(&0x1000u64.to_le_bytes());
        top.0[72..76].copy_from_slice(&1u32.to_le_bytes());
        assert!(matches!(
            parse(&top, top.base()),
            Err(PvhError::Unreadable {
                what: "memory map",
                ..
            })
        ));
    }

    #[test]
    fn survives_random_corruption() {
        let base = good();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut m = Fake(base.0.clone());
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let region = if seed & 1 == 0 { INFO } else { MAP };
                let at = region as usize + (seed >> 8) as usize % 80;
                m.0[at] = (seed >> 40) as u8;
            }
            // Any result is fine as long as it is a value, not a panic, and a success is sane.
            if let Ok(info) = parse(&m, INFO) {
                assert!(info.memory_map.usable_bytes() > 0);
            }
        }
    }

    fn low_map(low_usable: bool) -> MemoryMap {
        let mut m = MemoryMap::new();
        if low_usable {
            m.push(0, 0x9f000, RegionKind::Usable).unwrap();
        }
        m.push(0x9fc00, 0x400, RegionKind::Reserved).unwrap();
        m.push(0x10_0000, 0x70_0000, RegionKind::Usable).unwrap();
        m.finish().unwrap()
    }

    #[test]
    fn trampoline_is_the_lowest_free_page_and_ends_the_low_reservation() {
        let m = low_map(true);
        assert_eq!(trampoline_page(&m, 0x10_0000), Some(0x1000));
        assert_eq!(low_reserved_end(&m, 0x10_0000), 0x2000);
        // Not the start info's page.
        assert_eq!(trampoline_page(&m, 0x1234), Some(0x2000));
        assert_eq!(low_reserved_end(&m, 0x1234), 0x3000);
        // No usable low RAM: no trampoline, and only page 0 is kept back.
        let m = low_map(false);
        assert_eq!(trampoline_page(&m, 0x10_0000), None);
        assert_eq!(low_reserved_end(&m, 0x10_0000), 0x1000);
    }
}
