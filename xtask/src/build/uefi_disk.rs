//! The pc-uefi board's boot disk: a raw image to `dd` onto a USB stick, or to give QEMU as a
//! SATA disk behind OVMF (`ovmf.rs`).
//!
//! Layout, in 512-byte sectors (LBAs):
//!
//! ```text
//! 0            protective MBR (one partition of type 0xEE over the whole disk)
//! 1            primary GPT header
//! 2..=33       primary partition entries (128 entries of 128 bytes)
//! 2048..       the EFI System Partition, 1 MiB aligned, FAT16:
//!                \EFI\BOOT\BOOTX64.EFI   the loader with the kernel inside it
//!                \rhea.cfg               the kernel command line, see `config_bytes`
//!                                        (stored as the 8.3 name RHEA.CFG: UEFI's FAT
//!                                        lookups ignore case, so `\rhea.cfg` opens it)
//! last-32..    backup partition entries, then the backup GPT header in the last sector
//! ```
//!
//! The image is only as big as the ESP needs ([`Layout::for_efi`]): once written to a bigger
//! stick its backup GPT is no longer in the stick's last sector. UEFI firmware finds the
//! backup through the primary header's AlternateLBA and accepts it there; Linux notes
//! "Alternate GPT header not at the end of the disk" and uses the table all the same (as it
//! does for every dd'd installer image).
//!
//! The same inputs give the same bytes: the GUIDs and the FAT volume id are derived from the
//! EFI file's contents ([`Ids::for_efi`]), and every FAT timestamp is the DOS epoch
//! ([`DosEpoch`]). A different kernel so gets a different disk GUID, which keeps two Rhea
//! sticks in one machine apart, while a rebuild of the same kernel gives the same image.
//!
//! [`set_cmdline`] rewrites only `\rhea.cfg` in place, so tests can copy one image per run
//! and give each copy its own command line; [`read_file`] reads a file back for checks.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use fatfs::{FatType, FileSystem, FormatVolumeOptions, FsOptions};
use gpt::disk::LogicalBlockSize;
use gpt::mbr::ProtectiveMBR;
use gpt::partition::Partition;
use gpt::partition_types;
use uuid::Uuid;

use crate::{Context, Error, Result, fail};

/// The sector size of the image (what USB sticks and QEMU's SATA disk report).
const SECTOR: u64 = 512;
/// The partition's alignment: 1 MiB, what every partitioning tool uses, a multiple of any
/// flash erase block or 4K-sector size a stick may have underneath.
const ALIGN: u64 = 1 << 20;
/// GPT partition entries per table: 128, the minimum the UEFI spec allows (16 KiB).
const GPT_ENTRIES: u64 = 128;
/// Bytes per GPT partition entry.
const GPT_ENTRY_SIZE: u64 = 128;
/// Sectors of the backup GPT at the end of the disk: the entries, then the header.
const BACKUP_GPT_SECTORS: u64 = GPT_ENTRIES * GPT_ENTRY_SIZE / SECTOR + 1;
/// The smallest ESP: 3 MiB keeps a FAT16 of 512-byte clusters (see [`Layout::for_efi`]) at
/// about 6000 clusters, well above FAT16's floor of 4085, for even the smallest EFI file.
const MIN_ESP: u64 = 3 << 20;
/// Room left in the ESP besides the EFI file (beyond the FAT's own overhead): the config file,
/// the directories, and space for a bigger `\rhea.cfg` or a file added by hand later.
const ESP_SLACK: u64 = 1 << 20;
/// At most this many clusters: cluster sizes are chosen to stay below it, which keeps FAT16
/// well away from its ceiling of 65524 clusters. FAT types are told apart by cluster count
/// alone, and implementations that disagree by one near a limit are a known source of trouble.
const CLUSTER_TARGET: u64 = 32_768;
/// The largest cluster FAT16 is commonly read with (32 KiB; 64 KiB ones are not portable).
const MAX_CLUSTER: u64 = 32 << 10;

/// Where the firmware looks for a loader on removable media (the x86_64 default path).
pub(crate) const EFI_PATH: &str = "EFI/BOOT/BOOTX64.EFI";
/// The kernel command line, for the loader to read (see [`config_bytes`]).
pub(crate) const CONFIG_PATH: &str = "rhea.cfg";
/// The initramfs on the ESP (the loader's `INITRD_FILE`), when a run gives one.
pub(crate) const INITRD_PATH: &str = "initrd.img";
/// The longest command line: the kernel keeps 1024 bytes including its NUL terminator
/// (`boards/common-x86/src/pvh.rs`, `MAX_CMDLINE`).
pub(crate) const MAX_CMDLINE: usize = 1023;
/// The ESP's partition name in the GPT (shown by partitioning tools).
const PARTITION_NAME: &str = "EFI System Partition";
/// The FAT volume label (shown when the stick is mounted elsewhere), space padded.
const VOLUME_LABEL: [u8; 11] = *b"RHEA       ";

/// Writes a disk image at `path` that boots `efi` (a PE32+ x86_64 EFI application, the
/// loader) from its ESP, with `cmdline` in `\rhea.cfg`.
pub(crate) fn write_disk(path: &Path, efi: &[u8], cmdline: &str) -> Result<()> {
    write_disk_with(path, efi, cmdline, None)
}

/// [`write_disk`], with `initrd` (a cpio archive) as `\initrd.img` when given.
fn write_disk_with(path: &Path, efi: &[u8], cmdline: &str, initrd: Option<&[u8]>) -> Result<()> {
    let image = disk_image(efi, cmdline, initrd).map_err(|e| {
        Error::Failed(format!(
            "cannot make the disk image {}: {e}",
            path.display()
        ))
    })?;
    fs::write(path, image).context(|| format!("cannot write {}", path.display()))
}

/// Replaces `\rhea.cfg` in an image [`write_disk`] wrote, leaving everything else as it is:
/// the result is byte for byte the image `write_disk` makes with the new command line.
pub(crate) fn set_cmdline(path: &Path, cmdline: &str) -> Result<()> {
    let config = config_bytes(cmdline)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .context(|| format!("cannot open {}", path.display()))?;
    let in_image = |e: String| Error::Failed(format!("{}: {e}", path.display()));
    let esp = locate_esp(&mut file).map_err(in_image)?;
    let fat = open_fat(Window::new(&mut file, esp)).map_err(in_image)?;
    let result = fat
        .root_dir()
        .open_file(CONFIG_PATH)
        .map_err(|e| format!("the ESP holds no \\{CONFIG_PATH} ({e}); not an image of write_disk?"))
        .and_then(|mut f| {
            // Zero the old line before freeing its clusters (truncate keeps their bytes), then
            // write the new one from an empty file. The image so becomes the very one
            // write_disk makes for the new line: the clusters freed are the first free ones
            // and are taken again, and no byte of an earlier line is left behind.
            let zero = |f: &mut fatfs::File<'_, _>| -> io::Result<()> {
                let old = f.seek(SeekFrom::End(0))?;
                f.seek(SeekFrom::Start(0))?;
                io::copy(&mut io::repeat(0).take(old), f)?;
                f.seek(SeekFrom::Start(0))?;
                f.truncate()
            };
            zero(&mut f)
                .and_then(|()| f.write_all(&config))
                .and_then(|()| f.flush())
                .map_err(|e| format!("cannot rewrite \\{CONFIG_PATH}: {e}"))
        });
    let unmounted = fat
        .unmount()
        .map_err(|e| format!("cannot close the ESP's FAT: {e}"));
    result.and(unmounted).map_err(in_image)?;
    file.sync_all()
        .context(|| format!("cannot flush {}", path.display()))
}

/// Reads the file `name` (a path in the ESP, `\` or `/` separated, any case) from an image.
pub(crate) fn read_file(path: &Path, name: &str) -> Result<Vec<u8>> {
    let mut file = File::open(path).context(|| format!("cannot open {}", path.display()))?;
    let in_image = |e: String| Error::Failed(format!("{}: {e}", path.display()));
    let esp = locate_esp(&mut file).map_err(in_image)?;
    let fat = open_fat(Window::new(&mut file, esp)).map_err(in_image)?;
    let fat_path = name.replace('\\', "/");
    let fat_path = fat_path.trim_start_matches('/');
    let mut bytes = Vec::new();
    fat.root_dir()
        .open_file(fat_path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| {
            in_image(format!(
                "cannot read \\{} from the ESP: {e}",
                fat_path.replace('/', "\\")
            ))
        })?;
    Ok(bytes)
}

/// The contents of `\rhea.cfg` for `cmdline`: the command line, then one LF; an empty
/// command line is an empty file. The loader reads the file as bytes, drops the final LF and
/// hands the rest, NUL-terminated, to the kernel, which wants UTF-8 of at most 1023 bytes.
///
/// UTF-8 beyond ASCII is allowed (the kernel takes it, and `&str` is UTF-8 already); what is
/// refused is what would break that contract: too long, a NUL (the kernel would see a shorter
/// line), a CR or LF (the file holds one line, and a CR would reach the kernel as part of it).
pub(crate) fn config_bytes(cmdline: &str) -> Result<Vec<u8>> {
    check_cmdline(cmdline)?;
    let mut bytes = cmdline.as_bytes().to_vec();
    if !bytes.is_empty() {
        bytes.push(b'\n');
    }
    Ok(bytes)
}

fn check_cmdline(cmdline: &str) -> Result<()> {
    if cmdline.len() > MAX_CMDLINE {
        return fail(format!(
            "the kernel command line is {} bytes; the kernel keeps at most {MAX_CMDLINE} \
             (1024 with its NUL terminator)",
            cmdline.len()
        ));
    }
    if let Some(at) = cmdline.bytes().position(|b| b == 0) {
        return fail(format!(
            "the kernel command line has a NUL byte at byte {at}; the kernel would end it there"
        ));
    }
    if let Some(at) = cmdline.bytes().position(|b| b == b'\r' || b == b'\n') {
        return fail(format!(
            "the kernel command line has a line break (CR or LF) at byte {at}; \\{CONFIG_PATH} \
             holds exactly one line"
        ));
    }
    Ok(())
}

/// Refuses anything but a PE32+ image for x86_64 that is an EFI application: what the
/// firmware will load from `\EFI\BOOT\BOOTX64.EFI`. Catches handing over the kernel ELF, an
/// aarch64 build or a 32-bit one before a boot that would only show the firmware's menu.
pub(crate) fn check_efi(efi: &[u8]) -> Result<()> {
    check_pe(efi).map_err(|e| {
        Error::Failed(format!(
            "the EFI file ({} bytes) is not a PE32+ x86_64 EFI application: {e}",
            efi.len()
        ))
    })
}

const IMAGE_FILE_MACHINE_AMD64: u16 = 0x8664;
const PE32_PLUS_MAGIC: u16 = 0x20b;
const IMAGE_SUBSYSTEM_EFI_APPLICATION: u16 = 10;

fn check_pe(efi: &[u8]) -> Result<(), String> {
    let u16_at = |at: usize| {
        efi.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        efi.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if efi.len() < 0x40 {
        return Err("shorter than a DOS header (64 bytes)".into());
    }
    if efi[..2] != *b"MZ" {
        return Err(format!(
            "it starts with {:02x} {:02x}, not \"MZ\"{}",
            efi[0],
            efi[1],
            if efi.starts_with(b"\x7fELF") {
                " (it is an ELF file)"
            } else {
                ""
            }
        ));
    }
    let lfanew = u32_at(0x3c).unwrap_or(0) as usize;
    // The PE signature (4 bytes) and the COFF file header (20 bytes) follow e_lfanew.
    let coff = lfanew + 4;
    if coff + 20 > efi.len() {
        return Err(format!(
            "e_lfanew (at 0x3c) is {lfanew:#x}, which puts no PE header inside the file"
        ));
    }
    if efi[lfanew..coff] != *b"PE\0\0" {
        return Err(format!("no \"PE\\0\\0\" signature at e_lfanew {lfanew:#x}"));
    }
    let machine = u16_at(coff).unwrap_or(0);
    if machine != IMAGE_FILE_MACHINE_AMD64 {
        let name = match machine {
            0x14c => " (i386)",
            0xaa64 => " (arm64)",
            0x1c0 | 0x1c2 | 0x1c4 => " (arm)",
            0x5064 => " (riscv64)",
            _ => "",
        };
        return Err(format!(
            "its machine is {machine:#06x}{name}, not {IMAGE_FILE_MACHINE_AMD64:#06x} (x86_64)"
        ));
    }
    let optional_size = usize::from(u16_at(coff + 16).unwrap_or(0));
    let optional = coff + 20;
    // The PE32+ optional header's Subsystem field is at offset 68.
    if optional_size < 70 || optional + optional_size > efi.len() {
        return Err(format!(
            "its optional header is {optional_size} bytes{}; a PE32+ one has at least 70 \
             (up to the subsystem field)",
            if optional + optional_size > efi.len() {
                " and runs past the end"
            } else {
                ""
            }
        ));
    }
    let magic = u16_at(optional).unwrap_or(0);
    if magic != PE32_PLUS_MAGIC {
        let name = if magic == 0x10b {
            " (PE32, 32-bit)"
        } else {
            ""
        };
        return Err(format!(
            "its optional header magic is {magic:#05x}{name}, not {PE32_PLUS_MAGIC:#05x} (PE32+)"
        ));
    }
    let subsystem = u16_at(optional + 68).unwrap_or(0);
    if subsystem != IMAGE_SUBSYSTEM_EFI_APPLICATION {
        let name = match subsystem {
            2 => " (Windows GUI)",
            3 => " (Windows console)",
            11 => " (EFI boot service driver)",
            12 => " (EFI runtime driver)",
            _ => "",
        };
        return Err(format!(
            "its subsystem is {subsystem}{name}, not {IMAGE_SUBSYSTEM_EFI_APPLICATION} \
             (EFI application)"
        ));
    }
    Ok(())
}

/// Where things go on the disk, for an EFI file of a given size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    /// The ESP's first sector.
    esp_first: u64,
    /// The ESP's length in sectors (a multiple of [`ALIGN`]).
    esp_sectors: u64,
    /// The disk's length in sectors.
    disk_sectors: u64,
    /// The FAT's cluster size in bytes.
    cluster: u64,
}

impl Layout {
    /// The layout for an EFI file of `efi_len` bytes.
    ///
    /// The ESP is FAT16. The UEFI spec asks for FAT32 on fixed disks and allows FAT12/16 on
    /// removable media, which a USB stick is; OVMF and real firmware (EDK2's FAT driver and
    /// its relatives) read all three. FAT32 needs at least 65525 clusters, so with 512-byte
    /// clusters a 33 MiB partition at the least: an image several times the EFI file, copied
    /// once per test run. FAT16 needs only 4085 clusters (2 MiB) and reaches 2 GiB, so the
    /// image stays about [`ESP_SLACK`] above the EFI file. FAT12 would do for tiny files but
    /// tops out at 4084 clusters and is the least exercised type in firmware.
    ///
    /// The ESP holds the EFI file plus 1/32 of it (FAT entries and the rounding of its last
    /// cluster, with room to spare) plus [`ESP_SLACK`], rounded up to 1 MiB, at least
    /// [`MIN_ESP`]. Clusters are the smallest power of two from 512 bytes that keeps their
    /// count below [`CLUSTER_TARGET`]: between about 6000 and 32768, mid-range for FAT16.
    fn for_efi(efi_len: u64) -> Result<Layout, String> {
        let wanted = efi_len + efi_len / 32 + ESP_SLACK;
        let esp_bytes = wanted.div_ceil(ALIGN).max(MIN_ESP / ALIGN) * ALIGN;
        let mut cluster = SECTOR;
        while esp_bytes / cluster > CLUSTER_TARGET {
            cluster *= 2;
        }
        if cluster > MAX_CLUSTER {
            return Err(format!(
                "the EFI file is {efi_len} bytes; a FAT16 ESP holds at most about {} MiB",
                (CLUSTER_TARGET * MAX_CLUSTER) >> 20
            ));
        }
        let esp_first = ALIGN / SECTOR;
        let esp_sectors = esp_bytes / SECTOR;
        Ok(Layout {
            esp_first,
            esp_sectors,
            disk_sectors: esp_first + esp_sectors + BACKUP_GPT_SECTORS,
            cluster,
        })
    }

    fn esp(&self) -> Extent {
        Extent {
            start: self.esp_first * SECTOR,
            len: self.esp_sectors * SECTOR,
        }
    }
}

/// A byte range of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Extent {
    start: u64,
    len: u64,
}

/// The disk's identities, derived from the EFI file so the same file gives the same image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ids {
    disk_guid: Uuid,
    esp_guid: Uuid,
    volume_id: u32,
}

impl Ids {
    fn for_efi(efi: &[u8]) -> Ids {
        let guid = |tag: &str| {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&fnv1a(&[tag.as_bytes(), b"/0", efi]).to_le_bytes());
            bytes[8..].copy_from_slice(&fnv1a(&[tag.as_bytes(), b"/1", efi]).to_le_bytes());
            // An RFC 9562 version 8 ("custom") UUID: never mistaken for a random (v4) one.
            bytes[6] = (bytes[6] & 0x0f) | 0x80;
            bytes[8] = (bytes[8] & 0x3f) | 0x80;
            Uuid::from_bytes(bytes)
        };
        Ids {
            disk_guid: guid("rhea disk"),
            esp_guid: guid("rhea esp"),
            volume_id: fnv1a(&[b"rhea volume", efi]) as u32,
        }
    }
}

/// 64-bit FNV-1a over the concatenated parts: a stable hash (unlike std's `DefaultHasher`,
/// whose output may change between Rust releases), enough to tell builds apart.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|p| p.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The clock of every FAT timestamp: the DOS epoch, 1980-01-01 00:00:00, so images do not
/// depend on when they were made.
#[derive(Debug)]
struct DosEpoch;

static DOS_EPOCH: DosEpoch = DosEpoch;

impl fatfs::TimeProvider for DosEpoch {
    fn get_current_date(&self) -> fatfs::Date {
        fatfs::Date {
            year: 1980,
            month: 1,
            day: 1,
        }
    }

    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime {
            date: self.get_current_date(),
            time: fatfs::Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

fn fs_options() -> FsOptions {
    FsOptions::new()
        .time_provider(&DOS_EPOCH)
        .update_accessed_date(false)
}

/// A copy of the image `disk` ([`write_disk`]'s) with `initrd` (a file) added as
/// `\initrd.img`, next to it and named by a hash of both: written under a temporary name and
/// renamed, so concurrent runs share one copy and never see a half-written one.
pub(crate) fn with_initrd(disk: &Path, initrd: &Path) -> Result<PathBuf> {
    let archive = fs::read(initrd).context(|| format!("cannot read {}", initrd.display()))?;
    let efi = read_file(disk, EFI_PATH)?;
    let config = read_file(disk, CONFIG_PATH)?;
    let cmdline = String::from_utf8_lossy(&config).trim_end().to_string();
    let stem = disk.file_name().unwrap_or_default().to_string_lossy();
    let hash = fnv1a(&[&efi, &config, &archive]);
    let copy = disk.with_file_name(format!("{stem}.initrd-{hash:016x}.img"));
    if !copy.exists() {
        let tmp = disk.with_file_name(format!(
            "{stem}.initrd-{hash:016x}.{}.tmp",
            std::process::id()
        ));
        write_disk_with(&tmp, &efi, &cmdline, Some(&archive))?;
        fs::rename(&tmp, &copy).context(|| format!("cannot rename {}", tmp.display()))?;
    }
    Ok(copy)
}

/// The whole image, in memory.
fn disk_image(efi: &[u8], cmdline: &str, initrd: Option<&[u8]>) -> Result<Vec<u8>> {
    check_efi(efi)?;
    let config = config_bytes(cmdline)?;
    let files = efi.len() as u64 + initrd.map_or(0, |i| i.len() as u64);
    let layout = Layout::for_efi(files).map_err(Error::Failed)?;
    let ids = Ids::for_efi(efi);
    let mut disk = Cursor::new(vec![0u8; (layout.disk_sectors * SECTOR) as usize]);
    write_gpt(&mut disk, &layout, &ids).map_err(|e| Error::Failed(format!("GPT: {e}")))?;
    write_fat(&mut disk, &layout, &ids, efi, &config, initrd)
        .map_err(|e| Error::Failed(format!("the ESP's FAT: {e}")))?;
    Ok(disk.into_inner())
}

fn write_gpt(disk: &mut Cursor<Vec<u8>>, layout: &Layout, ids: &Ids) -> Result<(), String> {
    // The protective partition covers the disk after LBA 0 (capped at what 32 bits hold).
    let protected = u32::try_from(layout.disk_sectors - 1).unwrap_or(u32::MAX);
    ProtectiveMBR::with_lb_size(protected)
        .overwrite_lba0(disk)
        .map_err(|e| format!("cannot write the protective MBR: {e}"))?;
    let mut gpt = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(LogicalBlockSize::Lb512)
        .create_from_device(&mut *disk, Some(ids.disk_guid))
        .map_err(|e| e.to_string())?;
    let esp = Partition {
        part_type_guid: partition_types::EFI,
        part_guid: ids.esp_guid,
        first_lba: layout.esp_first,
        last_lba: layout.esp_first + layout.esp_sectors - 1,
        flags: 0,
        name: PARTITION_NAME.to_string(),
    };
    gpt.update_partitions(BTreeMap::from([(1, esp)]))
        .map_err(|e| e.to_string())?;
    let header = gpt.primary_header().map_err(|e| e.to_string())?;
    // gpt derives the usable range from the disk's size; the ESP must fall inside it.
    if header.first_usable > layout.esp_first
        || header.last_usable < layout.esp_first + layout.esp_sectors - 1
    {
        return Err(format!(
            "the ESP (LBAs {}..{}) is outside the usable LBAs {}..={}",
            layout.esp_first,
            layout.esp_first + layout.esp_sectors,
            header.first_usable,
            header.last_usable
        ));
    }
    gpt.write().map_err(|e| e.to_string())?;
    Ok(())
}

fn write_fat(
    disk: &mut Cursor<Vec<u8>>,
    layout: &Layout,
    ids: &Ids,
    efi: &[u8],
    config: &[u8],
    initrd: Option<&[u8]>,
) -> io::Result<()> {
    let esp = layout.esp();
    fatfs::format_volume(
        Window::new(&mut *disk, esp),
        FormatVolumeOptions::new()
            .fat_type(FatType::Fat16)
            .bytes_per_cluster(layout.cluster as u32)
            .total_sectors(layout.esp_sectors as u32)
            .volume_id(ids.volume_id)
            .volume_label(VOLUME_LABEL),
    )?;
    // BPB_HiddSec, the sectors before the volume: fatfs leaves it 0; FAT's spec (and
    // mkfs.fat) want the partition's first LBA there. No firmware known to us reads it, but
    // boot code and some tools do.
    let hidden = u32::try_from(layout.esp_first).unwrap_or(u32::MAX);
    disk.get_mut()[esp.start as usize + 0x1c..][..4].copy_from_slice(&hidden.to_le_bytes());

    let fat = FileSystem::new(Window::new(&mut *disk, esp), fs_options())?;
    {
        let root = fat.root_dir();
        let (dirs, file) = EFI_PATH.rsplit_once('/').unwrap_or(("", EFI_PATH));
        let mut dir = root.clone();
        for name in dirs.split('/') {
            dir = dir.create_dir(name)?;
        }
        dir.create_file(file)?.write_all(efi)?;
        root.create_file(CONFIG_PATH)?.write_all(config)?;
        if let Some(archive) = initrd {
            root.create_file(INITRD_PATH)?.write_all(archive)?;
        }
    }
    fat.unmount()
}

/// The ESP of an image: the one partition of type EFI System Partition in a GPT whose two
/// headers and tables are intact. Anything else is refused, with what is wrong: the images
/// are ours, so damage means a bad copy, not a layout to cope with.
fn locate_esp(disk: &mut File) -> Result<Extent, String> {
    let size = disk
        .metadata()
        .map_err(|e| format!("cannot stat: {e}"))?
        .len();
    if size % SECTOR != 0 || size < 3 * ALIGN {
        return Err(format!(
            "{size} bytes is no disk image of write_disk (a multiple of 512 bytes, at least 3 MiB)"
        ));
    }
    let mut mbr = [0u8; 512];
    disk.seek(SeekFrom::Start(0))
        .and_then(|_| disk.read_exact(&mut mbr))
        .map_err(|e| format!("cannot read the MBR: {e}"))?;
    if mbr[510..] != [0x55, 0xaa] || mbr[446 + 4] != 0xee {
        return Err("no protective MBR in sector 0 (signature 55 aa, partition type ee)".into());
    }
    let gpt = gpt::GptConfig::new()
        .writable(false)
        .logical_block_size(LogicalBlockSize::Lb512)
        .open_from_device(&mut *disk)
        .map_err(|e| match e {
            // Only when neither header is valid: one good header is enough to open.
            gpt::GptError::Header(e) => format!("no GPT: both headers are bad ({e})"),
            e => format!("the GPT partition table is bad ({e})"),
        })?;
    let primary = gpt
        .primary_header()
        .map_err(|e| format!("the primary GPT header (LBA 1) is bad: {e}"))?
        .clone();
    let last_lba = size / SECTOR - 1;
    if primary.backup_lba != last_lba {
        return Err(format!(
            "the primary GPT header puts the backup header at LBA {}, but the image's last LBA \
             is {last_lba}: a truncated or grown copy?",
            primary.backup_lba
        ));
    }
    let backup = gpt
        .backup_header()
        .map_err(|e| format!("the backup GPT header (the last LBA) is bad: {e}"))?
        .clone();
    if primary.current_lba != 1 || backup.backup_lba != 1 {
        return Err(format!(
            "the GPT headers do not point at each other (the primary at LBA 1 says it is at \
             {}, the backup names the primary at {})",
            primary.current_lba, backup.backup_lba
        ));
    }
    let esps: Vec<&Partition> = gpt
        .partitions()
        .values()
        .filter(|p| p.is_used() && p.part_type_guid == partition_types::EFI)
        .collect();
    let [esp] = esps[..] else {
        return Err(format!(
            "the GPT lists {} EFI System Partitions, not one",
            esps.len()
        ));
    };
    let (first, last) = (esp.first_lba, esp.last_lba);
    drop(gpt);
    // gpt checks the headers' CRCs, not the partition tables': check both here.
    for (which, header) in [("primary", &primary), ("backup", &backup)] {
        let table_len = u64::from(header.num_parts) * u64::from(header.part_size);
        if table_len > 1 << 20 {
            return Err(format!(
                "the {which} GPT header claims a {table_len}-byte table"
            ));
        }
        let mut table = vec![0u8; table_len as usize];
        disk.seek(SeekFrom::Start(header.part_start * SECTOR))
            .and_then(|_| disk.read_exact(&mut table))
            .map_err(|e| format!("cannot read the {which} GPT partition table: {e}"))?;
        if crc32(&table) != header.crc32_parts {
            return Err(format!(
                "the {which} GPT partition table (LBA {}) does not match its CRC",
                header.part_start
            ));
        }
    }
    if first < primary.first_usable || last > primary.last_usable || last < first {
        return Err(format!(
            "the ESP's LBAs {first}..={last} are outside the usable {}..={}",
            primary.first_usable, primary.last_usable
        ));
    }
    Ok(Extent {
        start: first * SECTOR,
        len: (last - first + 1) * SECTOR,
    })
}

/// The FAT in `esp`, or why it cannot be read.
fn open_fat<T: Read + Write + Seek>(esp: Window<T>) -> Result<FileSystem<Window<T>>, String> {
    FileSystem::new(esp, fs_options()).map_err(|e| format!("the ESP holds no readable FAT: {e}"))
}

/// CRC-32 (IEEE 802.3, reflected, as GPT uses), bit by bit: a 16 KiB table is all it sees.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// One partition of a disk as a stream of its own: fatfs reads and writes a volume from its
/// byte 0. Reads stop at the partition's end; writes past it fail.
struct Window<T> {
    disk: T,
    extent: Extent,
    /// The position inside the partition.
    pos: u64,
}

impl<T> fmt::Debug for Window<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Window")
            .field("extent", &self.extent)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl<T: Seek> Window<T> {
    fn new(disk: T, extent: Extent) -> Window<T> {
        Window {
            disk,
            extent,
            pos: 0,
        }
    }

    /// How many of `want` bytes fit before the end, with the disk seeked to the position.
    fn prepare(&mut self, want: usize) -> io::Result<usize> {
        let left = self.extent.len.saturating_sub(self.pos);
        let n = want.min(usize::try_from(left).unwrap_or(usize::MAX));
        if n > 0 {
            self.disk
                .seek(SeekFrom::Start(self.extent.start + self.pos))?;
        }
        Ok(n)
    }
}

impl<T: Read + Seek> Read for Window<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.prepare(buf.len())?;
        if n == 0 {
            return Ok(0);
        }
        let got = self.disk.read(&mut buf[..n])?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl<T: Write + Seek> Write for Window<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.prepare(buf.len())?;
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "write at byte {} past the end of the {}-byte partition",
                    self.pos, self.extent.len
                ),
            ));
        }
        let put = self.disk.write(&buf[..n])?;
        self.pos += put as u64;
        Ok(put)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.disk.flush()
    }
}

impl<T> Seek for Window<T> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.extent.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let Some(pos) = pos else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the partition",
            ));
        };
        self.pos = pos;
        Ok(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A directory of its own per test (tests run in parallel), removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(test: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("xtask-uefi-disk-{test}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const LFANEW: usize = 0x80;
    const COFF: usize = LFANEW + 4;
    const OPTIONAL: usize = COFF + 20;

    /// A minimal, valid-looking PE32+ x86_64 EFI application: DOS header, PE signature, COFF
    /// header, a 240-byte PE32+ optional header (subsystem 10), then `payload` bytes of
    /// made-up contents (so the file spans many clusters and differs byte by byte).
    fn fake_efi(payload: usize, seed: u64) -> Vec<u8> {
        let mut pe = vec![0u8; OPTIONAL + 240];
        pe[..2].copy_from_slice(b"MZ");
        pe[0x3c..0x40].copy_from_slice(&(LFANEW as u32).to_le_bytes());
        pe[LFANEW..COFF].copy_from_slice(b"PE\0\0");
        pe[COFF..COFF + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        pe[COFF + 16..COFF + 18].copy_from_slice(&240u16.to_le_bytes());
        pe[COFF + 18..COFF + 20].copy_from_slice(&0x22u16.to_le_bytes());
        pe[OPTIONAL..OPTIONAL + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        pe[OPTIONAL + 68..OPTIONAL + 70].copy_from_slice(&10u16.to_le_bytes());
        let mut x = seed | 1;
        pe.extend((0..payload).map(|_| {
            // xorshift64: cheap, deterministic filler.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        }));
        pe
    }

    /// Asserts two byte strings are equal, naming the first difference (not dumping both).
    fn same(a: &[u8], b: &[u8], what: &str) {
        if let Some(at) = a.iter().zip(b).position(|(x, y)| x != y) {
            panic!(
                "{what}: differ first at byte {at:#x} ({:#04x} vs {:#04x})",
                a[at], b[at]
            );
        }
        assert_eq!(a.len(), b.len(), "{what}: lengths");
    }

    fn err_text<T: fmt::Debug>(r: Result<T>) -> String {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// The ESP's bytes of an image, found independently of `locate_esp` (the layout's LBA).
    fn fat_of(image: &[u8]) -> FileSystem<Cursor<Vec<u8>>> {
        let first = 2048 * 512;
        let entry = 1024; // LBA 2: the first partition entry.
        let first_lba = u64::from_le_bytes(image[entry + 32..entry + 40].try_into().unwrap());
        let last_lba = u64::from_le_bytes(image[entry + 40..entry + 48].try_into().unwrap());
        assert_eq!(first_lba * 512, first as u64);
        let esp = image[first..(last_lba as usize + 1) * 512].to_vec();
        FileSystem::new(Cursor::new(esp), FsOptions::new()).unwrap()
    }

    fn read_all(fat: &FileSystem<Cursor<Vec<u8>>>, path: &str) -> Vec<u8> {
        let mut bytes = Vec::new();
        fat.root_dir()
            .open_file(path)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        bytes
    }

    #[test]
    fn uefi_disk_layout() {
        let small = Layout::for_efi(0).unwrap();
        assert_eq!(
            small,
            Layout {
                esp_first: 2048,
                esp_sectors: 3 * 2048,
                disk_sectors: 2048 + 3 * 2048 + 33,
                cluster: 512,
            }
        );
        // A 10 MiB loader: + 1/32 + 1 MiB, rounded up to whole MiB.
        let l = Layout::for_efi(10 << 20).unwrap();
        assert_eq!(l.esp_sectors, 12 * 2048);
        assert_eq!(l.cluster, 512);
        // Bigger files get bigger clusters, never more than CLUSTER_TARGET of them.
        for len in [0u64, 1, 2 << 20, 15 << 20, 40 << 20, 300 << 20, 900 << 20] {
            let l = Layout::for_efi(len).unwrap();
            let esp = l.esp_sectors * SECTOR;
            assert_eq!((l.esp_first * SECTOR) % ALIGN, 0, "{len}");
            assert_eq!(esp % ALIGN, 0, "{len}");
            assert!(esp >= len + ESP_SLACK, "{len}");
            assert!(esp / l.cluster <= CLUSTER_TARGET, "{len}");
            // FAT16's cluster count range, with room for the FATs and root directory.
            assert!(esp / l.cluster > 4085 + 200, "{len}");
            assert!(
                l.cluster.is_power_of_two() && l.cluster <= MAX_CLUSTER,
                "{len}"
            );
            assert_eq!(l.disk_sectors, l.esp_first + l.esp_sectors + 33);
        }
        let e = Layout::for_efi(3 << 30).unwrap_err();
        assert!(e.contains("at most about 1024 MiB"), "{e}");
    }

    #[test]
    fn uefi_disk_image_parses_back() {
        let dir = Scratch::new("parses");
        let disk = dir.path("disk.img");
        let efi = fake_efi(300_000, 1);
        let cmdline = "console=ttyS0 rhea.test=boot";
        write_disk(&disk, &efi, cmdline).unwrap();
        let image = fs::read(&disk).unwrap();
        let sectors = image.len() as u64 / 512;
        assert_eq!(image.len() % 512, 0);
        assert_eq!(
            sectors,
            Layout::for_efi(efi.len() as u64).unwrap().disk_sectors
        );
        // A few MiB above the EFI file, no more.
        assert!(image.len() < efi.len() + (4 << 20), "{}", image.len());

        // The protective MBR: one partition of type 0xEE from LBA 1 over the rest of the disk.
        assert_eq!(image[510..512], [0x55, 0xaa]);
        let record = &image[446..462];
        assert_eq!(record[4], 0xee);
        assert_eq!(u32::from_le_bytes(record[8..12].try_into().unwrap()), 1);
        let protected = u32::from_le_bytes(record[12..16].try_into().unwrap());
        assert_eq!(u64::from(protected), sectors - 1);
        assert!(
            image[462..510].iter().all(|&b| b == 0),
            "other MBR records empty"
        );

        // Both GPT headers valid, pointing at each other, one ESP inside the usable range.
        let gpt = gpt::GptConfig::new()
            .only_valid_headers(true)
            .logical_block_size(LogicalBlockSize::Lb512)
            .open(&disk)
            .unwrap();
        let primary = gpt.primary_header().unwrap();
        let backup = gpt.backup_header().unwrap();
        assert_eq!((primary.current_lba, primary.backup_lba), (1, sectors - 1));
        assert_eq!((backup.current_lba, backup.backup_lba), (sectors - 1, 1));
        assert_eq!(primary.part_start, 2);
        assert_eq!(backup.part_start, sectors - 33);
        assert_eq!(primary.disk_guid, backup.disk_guid);
        assert!(!primary.disk_guid.is_nil());
        let used: Vec<&Partition> = gpt.partitions().values().filter(|p| p.is_used()).collect();
        assert_eq!(used.len(), 1);
        let esp = used[0];
        assert_eq!(esp.part_type_guid, partition_types::EFI);
        assert_eq!(
            esp.part_type_guid.guid.to_string().to_uppercase(),
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
        );
        assert_eq!(esp.name, PARTITION_NAME);
        assert!(!esp.part_guid.is_nil() && esp.part_guid != primary.disk_guid);
        assert_eq!(esp.first_lba % 2048, 0);
        assert_eq!((esp.last_lba + 1) % 2048, 0);
        assert!(esp.first_lba >= primary.first_usable);
        assert!(esp.last_lba <= primary.last_usable);
        assert!(primary.last_usable < backup.part_start);
        // The partition tables' CRCs (gpt checks only the headers').
        for h in [primary, backup] {
            let at = h.part_start as usize * 512;
            let table = &image[at..at + 128 * 128];
            assert_eq!(crc32(table), h.crc32_parts);
        }
        // Both tables are the same bytes.
        same(
            &image[1024..1024 + 16384],
            &image[(sectors as usize - 33) * 512..][..16384],
            "the two partition tables",
        );

        // The FAT: FAT16, our label and id, the partition's LBA as hidden sectors, two files.
        let fat = fat_of(&image);
        assert_eq!(fat.fat_type(), FatType::Fat16);
        assert_eq!(fat.volume_id(), Ids::for_efi(&efi).volume_id);
        assert_eq!(fat.volume_label_as_bytes(), b"RHEA");
        let boot = 2048 * 512;
        assert_eq!(image[boot + 0x1c..boot + 0x20], 2048u32.to_le_bytes());
        assert_eq!(read_all(&fat, "EFI/BOOT/BOOTX64.EFI"), efi);
        assert_eq!(
            read_all(&fat, "rhea.cfg"),
            b"console=ttyS0 rhea.test=boot\n"
        );
        // 8.3 entries only, the dot entries first in each directory, all stamped 1980-01-01.
        let listing = |dir: fatfs::Dir<'_, _>| -> Vec<String> {
            dir.iter()
                .map(|e| {
                    let e = e.unwrap();
                    let name = String::from_utf8_lossy(e.short_file_name_as_bytes()).into_owned();
                    assert_eq!(e.modified().date.year, 1980, "{name}");
                    assert_eq!(e.created().date.year, 1980, "{name}");
                    name
                })
                .collect()
        };
        let root = fat.root_dir();
        assert_eq!(listing(root.clone()), ["EFI", "RHEA.CFG"]);
        assert_eq!(listing(root.open_dir("EFI").unwrap()), [".", "..", "BOOT"]);
        assert_eq!(
            listing(root.open_dir("EFI/BOOT").unwrap()),
            [".", "..", "BOOTX64.EFI"]
        );
        // No long-name entries (attribute 0x0f) anywhere: the root directory's raw entries.
        let root_dir = 2048 * 512 + (1 + 2 * 24) * 512;
        let attrs: Vec<u8> = image[root_dir..root_dir + 4 * 32]
            .chunks(32)
            .map(|e| e[11])
            .collect();
        assert_eq!(attrs, [0x08, 0x10, 0x00, 0x00], "label, EFI, RHEA.CFG, end");
        drop(root);
        drop(fat);

        // And through this module's own reader, with either separator.
        assert_eq!(read_file(&disk, "\\EFI\\BOOT\\BOOTX64.EFI").unwrap(), efi);
        assert_eq!(read_file(&disk, "/efi/boot/bootx64.efi").unwrap(), efi);
        assert_eq!(
            read_file(&disk, "\\rhea.cfg").unwrap(),
            b"console=ttyS0 rhea.test=boot\n"
        );
        let e = err_text(read_file(&disk, "\\EFI\\BOOT\\GRUBX64.EFI"));
        assert!(
            e.contains("cannot read \\EFI\\BOOT\\GRUBX64.EFI from the ESP"),
            "{e}"
        );
    }

    #[test]
    fn uefi_disk_with_initrd() {
        let dir = Scratch::new("initrd");
        let disk = dir.path("disk.img");
        let efi = fake_efi(70_000, 3);
        write_disk(&disk, &efi, "rhea.test=1").unwrap();
        // An archive larger than the ESP's slack: the copy's ESP grows to hold it.
        let archive: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let cpio = dir.path("a.cpio");
        fs::write(&cpio, &archive).unwrap();
        let copy = with_initrd(&disk, &cpio).unwrap();
        assert_ne!(copy, disk, "the built image is left as it was");
        assert_eq!(read_file(&copy, INITRD_PATH).unwrap(), archive);
        assert_eq!(read_file(&copy, EFI_PATH).unwrap(), efi);
        assert_eq!(read_file(&copy, CONFIG_PATH).unwrap(), b"rhea.test=1\n");
        assert!(read_file(&disk, INITRD_PATH).is_err());
        // The same inputs name the same copy; a command line set on it keeps the archive.
        assert_eq!(with_initrd(&disk, &cpio).unwrap(), copy);
        set_cmdline(&copy, "rhea.test=2").unwrap();
        assert_eq!(read_file(&copy, INITRD_PATH).unwrap(), archive);
        // A missing archive is an error naming it.
        let e = with_initrd(&disk, &dir.path("none.cpio")).unwrap_err();
        assert!(e.to_string().contains("none.cpio"), "{e}");
    }

    #[test]
    fn uefi_disk_set_cmdline() {
        let dir = Scratch::new("cmdline");
        let disk = dir.path("disk.img");
        let efi = fake_efi(70_000, 2);
        write_disk(&disk, &efi, "rhea.test=first").unwrap();
        let original = fs::read(&disk).unwrap();

        let line = "console=ttyS0 rhea.test=second rhea.name=café";
        set_cmdline(&disk, line).unwrap();
        assert_eq!(
            read_file(&disk, "rhea.cfg").unwrap(),
            format!("{line}\n").as_bytes()
        );
        assert_eq!(read_file(&disk, "EFI/BOOT/BOOTX64.EFI").unwrap(), efi);
        // Only the ESP's insides changed: MBR, both GPTs and the disk's size are as they were.
        let changed = fs::read(&disk).unwrap();
        assert_eq!(changed.len(), original.len());
        let esp = Layout::for_efi(efi.len() as u64).unwrap().esp();
        let (start, end) = (esp.start as usize, (esp.start + esp.len) as usize);
        same(&changed[..start], &original[..start], "before the ESP");
        same(&changed[end..], &original[end..], "after the ESP");
        // ... and there only a few sectors: the FATs, the directory entry, the file's cluster.
        let sectors = changed
            .chunks(512)
            .zip(original.chunks(512))
            .filter(|(a, b)| a != b)
            .count();
        assert!((1..=6).contains(&sectors), "{sectors} sectors changed");

        // The empty command line is an empty file, and back.
        set_cmdline(&disk, "").unwrap();
        assert_eq!(read_file(&disk, "rhea.cfg").unwrap(), b"");
        // Setting the first line again gives back the very image write_disk made.
        set_cmdline(&disk, "rhea.test=first").unwrap();
        same(&fs::read(&disk).unwrap(), &original, "after the round trip");
        // And so for any line, whatever was there before: a two-cluster line, shorter ones.
        let fresh = dir.path("fresh.img");
        for line in [
            &"y".repeat(MAX_CMDLINE),
            "",
            line,
            "a",
            &"z".repeat(600),
            "",
        ] {
            set_cmdline(&disk, line).unwrap();
            write_disk(&fresh, &efi, line).unwrap();
            same(
                &fs::read(&disk).unwrap(),
                &fs::read(&fresh).unwrap(),
                &format!("set_cmdline vs write_disk of a {}-byte line", line.len()),
            );
        }

        // The longest command line fits.
        let longest = "x".repeat(MAX_CMDLINE);
        set_cmdline(&disk, &longest).unwrap();
        assert_eq!(read_file(&disk, "rhea.cfg").unwrap().len(), MAX_CMDLINE + 1);

        // An empty command line from the start.
        let empty = dir.path("empty.img");
        write_disk(&empty, &efi, "").unwrap();
        assert_eq!(read_file(&empty, "rhea.cfg").unwrap(), b"");
        set_cmdline(&empty, "a").unwrap();
        assert_eq!(read_file(&empty, "rhea.cfg").unwrap(), b"a\n");
    }

    #[test]
    fn uefi_disk_is_deterministic() {
        let dir = Scratch::new("determinism");
        let (a, b, c) = (dir.path("a.img"), dir.path("b.img"), dir.path("c.img"));
        let efi = fake_efi(50_000, 3);
        write_disk(&a, &efi, "rhea.test=x").unwrap();
        write_disk(&b, &efi, "rhea.test=x").unwrap();
        same(&fs::read(&a).unwrap(), &fs::read(&b).unwrap(), "two writes");
        // Another EFI file (same size): other GUIDs and volume id.
        let other = fake_efi(50_000, 4);
        write_disk(&c, &other, "rhea.test=x").unwrap();
        let (x, y) = (Ids::for_efi(&efi), Ids::for_efi(&other));
        assert_ne!(x.disk_guid, y.disk_guid);
        assert_ne!(x.esp_guid, y.esp_guid);
        assert_ne!(x.volume_id, y.volume_id);
        assert_eq!(x.disk_guid.get_version_num(), 8);
        assert_eq!(x.disk_guid.get_variant(), uuid::Variant::RFC4122);
        let gpt = gpt::GptConfig::new().open(&c).unwrap();
        assert_eq!(*gpt.guid(), y.disk_guid);
    }

    #[test]
    fn uefi_disk_refuses_bad_command_lines() {
        let dir = Scratch::new("bad-cmdline");
        let disk = dir.path("disk.img");
        let efi = fake_efi(1000, 5);
        let e = err_text(write_disk(&disk, &efi, &"x".repeat(1024)));
        assert!(
            e.contains("is 1024 bytes; the kernel keeps at most 1023"),
            "{e}"
        );
        assert!(!disk.exists(), "nothing written on a refusal");
        // Counted in bytes, not characters: 512 two-byte characters are 1024 bytes.
        let e = err_text(write_disk(&disk, &efi, &"é".repeat(512)));
        assert!(e.contains("is 1024 bytes"), "{e}");
        let e = err_text(write_disk(&disk, &efi, "a\0b"));
        assert!(e.contains("a NUL byte at byte 1"), "{e}");
        for bad in ["a\nb", "a\r", "a\r\nb"] {
            let e = err_text(write_disk(&disk, &efi, bad));
            assert!(
                e.contains("a line break (CR or LF) at byte 1"),
                "{bad:?}: {e}"
            );
        }
        write_disk(&disk, &efi, "ok").unwrap();
        let e = err_text(set_cmdline(&disk, "two\nlines"));
        assert!(e.contains("line break"), "{e}");
        assert_eq!(read_file(&disk, "rhea.cfg").unwrap(), b"ok\n");
        assert_eq!(config_bytes("tab\there").unwrap(), b"tab\there\n");
    }

    #[test]
    fn uefi_disk_refuses_what_is_not_an_efi_application() {
        let good = fake_efi(0, 6);
        check_efi(&good).unwrap();
        let refused = |efi: &[u8], why: &str| {
            let e = err_text(check_efi(efi));
            assert!(e.contains("is not a PE32+ x86_64 EFI application"), "{e}");
            assert!(e.contains(why), "wanted {why:?} in: {e}");
        };
        refused(&good[..0x3f], "shorter than a DOS header");
        let mut elf = good.clone();
        elf[..4].copy_from_slice(b"\x7fELF");
        refused(&elf, "starts with 7f 45, not \"MZ\" (it is an ELF file)");
        let mut far = good.clone();
        far[0x3c..0x40].copy_from_slice(&0x10_0000u32.to_le_bytes());
        refused(&far, "e_lfanew (at 0x3c) is 0x100000");
        let mut no_pe = good.clone();
        no_pe[LFANEW..COFF].copy_from_slice(b"NE\0\0");
        refused(&no_pe, "no \"PE\\0\\0\" signature at e_lfanew 0x80");
        let mut arm = good.clone();
        arm[COFF..COFF + 2].copy_from_slice(&0xaa64u16.to_le_bytes());
        refused(&arm, "its machine is 0xaa64 (arm64), not 0x8664 (x86_64)");
        let mut pe32 = good.clone();
        pe32[OPTIONAL..OPTIONAL + 2].copy_from_slice(&0x10bu16.to_le_bytes());
        refused(&pe32, "magic is 0x10b (PE32, 32-bit), not 0x20b (PE32+)");
        let mut short = good.clone();
        short[COFF + 16..COFF + 18].copy_from_slice(&0u16.to_le_bytes());
        refused(&short, "its optional header is 0 bytes");
        refused(&good[..OPTIONAL + 100], "runs past the end");
        let mut driver = good.clone();
        driver[OPTIONAL + 68..OPTIONAL + 70].copy_from_slice(&11u16.to_le_bytes());
        refused(&driver, "its subsystem is 11 (EFI boot service driver)");

        let dir = Scratch::new("bad-efi");
        let disk = dir.path("disk.img");
        let e = err_text(write_disk(&disk, &elf, ""));
        assert!(e.contains("cannot make the disk image"), "{e}");
        assert!(!disk.exists());
    }

    #[test]
    fn uefi_disk_refuses_damaged_images() {
        let dir = Scratch::new("damaged");
        let good = dir.path("good.img");
        let efi = fake_efi(20_000, 7);
        write_disk(&good, &efi, "rhea.test=x").unwrap();
        let image = fs::read(&good).unwrap();
        let sectors = image.len() / 512;
        let damaged = |name: &str, damage: &dyn Fn(&mut Vec<u8>), why: &str| {
            let path = dir.path(name);
            let mut bytes = image.clone();
            damage(&mut bytes);
            fs::write(&path, &bytes).unwrap();
            let e = err_text(set_cmdline(&path, "rhea.test=y"));
            assert!(e.contains(why), "{name}: wanted {why:?} in: {e}");
            assert!(e.contains(&path.display().to_string()), "{name}: {e}");
            let e = err_text(read_file(&path, "rhea.cfg"));
            assert!(e.contains(why), "{name}: wanted {why:?} in: {e}");
        };
        damaged(
            "primary.img",
            &|b| b[512..1024].fill(0),
            "the primary GPT header (LBA 1) is bad: Invalid GPT Signature",
        );
        damaged(
            "backup.img",
            &|b| b[(sectors - 1) * 512..].fill(0),
            "the backup GPT header (the last LBA) is bad",
        );
        damaged(
            "both.img",
            &|b| {
                b[512..1024].fill(0);
                b[(sectors - 1) * 512..].fill(0);
            },
            "no GPT: both headers are bad",
        );
        damaged(
            "table.img",
            &|b| b[1024 + 40] ^= 1,
            "the GPT partition table is bad (GPT IO Error: partition table CRC mismatch)",
        );
        damaged(
            "backup-table.img",
            &|b| b[(sectors - 33) * 512 + 40] ^= 1,
            &format!(
                "the backup GPT partition table (LBA {}) does not match its CRC",
                sectors - 33
            ),
        );
        damaged("mbr.img", &|b| b[510] = 0, "no protective MBR in sector 0");
        damaged(
            "truncated.img",
            &|b| b.truncate(b.len() - 512),
            &format!(
                "puts the backup header at LBA {}, but the image's last LBA is {}: a truncated \
                 or grown copy?",
                sectors - 1,
                sectors - 2
            ),
        );
        damaged(
            "grown.img",
            &|b| b.resize(b.len() + (1 << 20), 0),
            "a truncated or grown copy?",
        );
        damaged(
            "fat.img",
            &|b| b[2048 * 512..2049 * 512].fill(0),
            "the ESP holds no readable FAT",
        );
        damaged(
            "tiny.img",
            &|b| b.truncate(4096),
            "no disk image of write_disk",
        );
        damaged("odd.img", &|b| b.push(0), "no disk image of write_disk");

        // An image without the config file.
        let path = dir.path("no-config.img");
        fs::copy(&good, &path).unwrap();
        {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
            let esp = locate_esp(&mut file).unwrap();
            let fat = open_fat(Window::new(&mut file, esp)).unwrap();
            fat.root_dir().remove(CONFIG_PATH).unwrap();
            fat.unmount().unwrap();
        }
        let e = err_text(set_cmdline(&path, "x"));
        assert!(e.contains("the ESP holds no \\rhea.cfg"), "{e}");

        let e = err_text(set_cmdline(&dir.path("missing.img"), "x"));
        assert!(e.contains("cannot open"), "{e}");
    }

    #[test]
    fn uefi_disk_crc32_and_window() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
        let mut disk = Cursor::new(vec![0u8; 16]);
        let mut w = Window::new(&mut disk, Extent { start: 4, len: 8 });
        w.write_all(b"abcdef").unwrap();
        assert_eq!(w.write(b"ghijk").unwrap(), 2);
        assert!(w.write(b"x").is_err(), "past the end");
        assert_eq!(w.seek(SeekFrom::End(-3)).unwrap(), 5);
        let mut buf = Vec::new();
        w.read_to_end(&mut buf).unwrap();
        assert_eq!(buf, b"fgh");
        assert!(w.seek(SeekFrom::Current(-100)).is_err());
        assert_eq!(disk.into_inner(), b"\0\0\0\0abcdefgh\0\0\0\0");
    }
}
