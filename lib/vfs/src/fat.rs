//! FAT16 and FAT32 on a [`BlockDevice`], as a [`FileSystem`] ([`FatFs`]), over the
//! `embedded-sdmmc` crate (no_std, no heap of its own).
//!
//! **The disk**: a bare FAT volume (its boot sector at sector 0) or an MBR-partitioned disk
//! (the first primary partition of a FAT type). embedded-sdmmc reads only MBR disks, so it is
//! shown a disk of its own (`Disk`): sector 0 a made-up MBR with one partition at sector
//! 1, the volume's sectors after it; a sector past the volume is an error, never a read of
//! another partition. FAT12 is refused ([`ErrorKind::Unsupported`]): embedded-sdmmc has no
//! FAT12, nor sectors other than 512 bytes, nor GPT.
//!
//! **Where hostile bytes are trusted**: embedded-sdmmc trusts what it reads — its boot-sector
//! arithmetic underflows or divides by zero on a bad BPB, it panics or computes sectors with
//! wrapped arithmetic on a cluster number outside the volume, walks a directory chain that
//! loops forever, its long-name decoder can panic on crafted slots, and its allocator can
//! take a FAT entry past the last cluster (on a full volume, or from a stale FSInfo hint)
//! and write past the volume. So Rhea checks first and hands it only what is sound: the
//! boot sector (every field and every derived quantity, against the disk's size: a
//! truncated image fails the mount) before the crate parses it; before every call, each
//! directory chain on the path and the file's chain as far as the call goes (every link
//! inside the volume, no loop — Brent's cycle detection, and never more links than the
//! volume has clusters). Directory listings, name lookups and long names are read by Rhea's
//! own code, which bounds a directory at FAT's 65536 entries (the crate's long-name decoder
//! is never used); embedded-sdmmc is called by short (8.3) names only, after checking that
//! its by-name search will find that very entry (a long-name slot or volume label with the
//! same 11 bytes would shadow it: refused). The FAT entries past the last cluster read as
//! bad clusters to the crate.
//!
//! **What embedded-sdmmc does**: mounting, opening by short name, reading and writing file
//! data (allocating clusters), creating files and directories, deleting an entry. **What
//! Rhea adds**: truncation to any length (`set_len`; the crate truncates only to 0, and
//! keeps the first cluster), extension with zeros (written through the crate), freeing a
//! removed file's clusters and its long-name slots (the crate only marks the short entry
//! deleted, leaking the chain), keeping the case bits and creation time of an entry the
//! crate rewrites, and the free-cluster count.
//!
//! **What is refused**: long names cannot be created (the crate writes no long-name slots):
//! a new name must be 8.3, each part all upper or all lower case (kept with the NT case
//! bits), else [`ErrorKind::InvalidName`]; rename and symbolic links are
//! [`ErrorKind::Unsupported`]; a node with handles cannot be removed ([`ErrorKind::Busy`]:
//! FAT has no way to keep a removed file's clusters for its readers); files end at 4 GiB − 1
//! ([`ErrorKind::InvalidArgument`]).
//!
//! **Space**: a write or extension that does not fit is refused whole with
//! [`ErrorKind::NoSpace`] before anything changes. One cluster is always left free:
//! embedded-sdmmc's allocator links the last free cluster into the chain and then fails,
//! and when extending a directory that leaves an unzeroed cluster in it. The free count is
//! read from the FAT on the first write or [`FileSystem::usage`] after mounting (a scan of
//! the whole FAT: 4 bytes per cluster on FAT32), then kept. The FSInfo sector's advisory
//! free count is set to "unknown" on the first change (other systems then count again).
//!
//! **Cost**: nothing is cached between operations. A handle is a short-name path (a slab
//! slot and generation, as tmpfs's); every operation walks it from the root again, checking
//! each directory's chain and reading it until the name, and embedded-sdmmc re-opens the
//! path by name and walks the file's chain from its start to the offset (a read at offset
//! `n` costs `n / cluster` FAT lookups). Reading a file in pieces is therefore quadratic in
//! its length over the cluster size; fine for configuration and logs, slow for large files.
//! Every change ends with [`BlockDevice::flush`].
//!
//! **Time**: there is no clock here: what is written gets the DOS epoch (1980-01-01).
//!
//! **Locking**: one lock `R` per file system, held for the whole operation (disk I/O
//! included); the device is called under it.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::ControlFlow;
use embedded_sdmmc as sd;
use lock_api::{Mutex, RawMutex};

use crate::block::{BlockDevice, BlockError, SECTOR};
use crate::node::{ErrorKind, FileSystem, FileType, Metadata, NewNode, NodeId, Usage};
use crate::path;

/// Bytes of a directory slot.
const SLOT: usize = 32;
/// The most slots a FAT directory may have (2 MiB of directory).
pub const MAX_DIR_SLOTS: usize = 65536;
/// The largest FAT file, in bytes.
pub const MAX_FILE_SIZE: u64 = u32::MAX as u64;
/// Directories embedded-sdmmc may hold open at once (Rhea opens at most two: a parent while
/// it opens the child).
const MAX_DIRS: usize = 4;
/// Files embedded-sdmmc may hold open at once (Rhea opens one per operation).
const MAX_FILES: usize = 2;

const ATTR_READ_ONLY: u8 = 0x01;
const ATTR_VOLUME: u8 = 0x08;
const ATTR_DIR: u8 = 0x10;
const ATTR_ARCHIVE: u8 = 0x20;
/// A long-name slot's attributes (under the mask 0x3F).
const ATTR_LFN: u8 = 0x0F;
/// NT's case bits (byte 12 of a short entry): base name and extension shown in lower case.
const CASE_LOWER_BASE: u8 = 0x08;
const CASE_LOWER_EXT: u8 = 0x10;
/// The partition types taken as FAT (FAT12, FAT16 small and large, FAT32 CHS and LBA,
/// FAT16 LBA).
const FAT_PARTITIONS: [u8; 6] = [0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E];
/// A GPT disk's protective partition.
const GPT_PROTECTIVE: u8 = 0xEE;
/// Where the 13 UTF-16 units of a long-name slot are.
const LFN_UNITS: [usize; 13] = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
const DOT: [u8; 11] = *b".          ";
const DOT_DOT: [u8; 11] = *b"..         ";
static ZEROS: [u8; 4096] = [0; 4096];

/// A short name as stored: 8 bytes of name, 3 of extension, space-padded.
type Sfn = [u8; 11];

/// Which FAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatType {
    /// 16-bit cluster numbers, a fixed root directory (4085 to 65524 clusters).
    Fat16,
    /// 28-bit cluster numbers, the root directory a cluster chain (65525 clusters or more).
    Fat32,
}

fn bad(why: &'static str) -> ErrorKind {
    ErrorKind::Io(why)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A volume's layout, from its boot sector, checked. Every sector number is relative to the
/// volume's first sector; every derived quantity is in range of the volume.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    fat_type: FatType,
    sectors_per_cluster: u32,
    reserved: u32,
    fats: u32,
    /// Sectors of one FAT.
    fat_sectors: u32,
    /// FAT16's fixed root directory: its first sector and length.
    root_start: u32,
    root_sectors: u32,
    /// The sector of cluster 2.
    first_data: u32,
    /// The volume's sectors, as its boot sector says.
    total: u32,
    /// Data clusters: they are numbered 2 to `clusters + 1`.
    clusters: u32,
    /// FAT32: the root directory's first cluster and the FSInfo sector.
    root_cluster: u32,
    fsinfo: u32,
}

impl Geometry {
    /// Checks boot sector `bs` of a volume with room for `room` sectors, as embedded-sdmmc
    /// will compute it (the same formulas), so that none of its arithmetic can overflow.
    fn parse(bs: &[u8; SECTOR], room: u64) -> Result<Geometry, ErrorKind> {
        if u16_at(bs, 510) != 0xAA55 {
            return Err(bad("no FAT boot sector (no 0x55AA signature)"));
        }
        match u16_at(bs, 11) {
            512 => {}
            1024 | 2048 | 4096 => return Err(ErrorKind::Unsupported),
            _ => return Err(bad("a FAT boot sector with a bad sector size")),
        }
        let spc = u32::from(bs[13]);
        if !spc.is_power_of_two() {
            return Err(bad("a FAT boot sector with a bad cluster size"));
        }
        let reserved = u32::from(u16_at(bs, 14));
        if reserved == 0 {
            return Err(bad("a FAT boot sector with no reserved sectors"));
        }
        let fats = u32::from(bs[16]);
        match fats {
            0 => return Err(bad("a FAT boot sector with no FAT")),
            1 | 2 => {}
            _ => return Err(ErrorKind::Unsupported),
        }
        let root_entries = u32::from(u16_at(bs, 17));
        let total = match u16_at(bs, 19) {
            0 => u32_at(bs, 32),
            n => u32::from(n),
        };
        let fat_sectors = match u16_at(bs, 22) {
            0 => u32_at(bs, 36),
            n => u32::from(n),
        };
        if total == 0 || fat_sectors == 0 {
            return Err(bad("a FAT boot sector with no sectors or an empty FAT"));
        }
        let root_sectors = (root_entries * 32).div_ceil(SECTOR as u32);
        let first_data = u64::from(reserved)
            + u64::from(fats) * u64::from(fat_sectors)
            + u64::from(root_sectors);
        if first_data >= u64::from(total) {
            return Err(bad("a FAT boot sector whose FATs fill the volume"));
        }
        if u64::from(total) > room {
            return Err(bad(
                "a FAT volume longer than its disk or partition (a truncated image?)",
            ));
        }
        if total == u32::MAX {
            // The disk shown to embedded-sdmmc has one more sector.
            return Err(ErrorKind::Unsupported);
        }
        let first_data = first_data as u32;
        let clusters = (total - first_data) / spc;
        let fat_type = match clusters {
            0..4085 => return Err(ErrorKind::Unsupported), // FAT12
            4085..65525 => FatType::Fat16,
            65525..=0x0FFF_FFF5 => FatType::Fat32,
            _ => return Err(bad("a FAT32 volume with too many clusters")),
        };
        let entry_bytes = match fat_type {
            FatType::Fat16 => 2,
            FatType::Fat32 => 4,
        };
        if (u64::from(clusters) + 2) * entry_bytes > u64::from(fat_sectors) * SECTOR as u64 {
            return Err(bad("a FAT too small for its volume's clusters"));
        }
        let mut g = Geometry {
            fat_type,
            sectors_per_cluster: spc,
            reserved,
            fats,
            fat_sectors,
            root_start: reserved + fats * fat_sectors,
            root_sectors,
            first_data,
            total,
            clusters,
            root_cluster: 0,
            fsinfo: 0,
        };
        match fat_type {
            FatType::Fat16 if root_entries == 0 => {
                Err(bad("a FAT16 volume without root directory entries"))
            }
            FatType::Fat16 => Ok(g),
            FatType::Fat32 => {
                if root_entries != 0 {
                    return Err(bad("a FAT32 boot sector with FAT16 root directory entries"));
                }
                if u16_at(bs, 42) != 0 {
                    // Only version 0.0 exists; embedded-sdmmc refuses others.
                    return Err(ErrorKind::Unsupported);
                }
                g.root_cluster = u32_at(bs, 44);
                g.fsinfo = u32::from(u16_at(bs, 48));
                if !g.is_cluster(g.root_cluster) {
                    return Err(bad("a FAT32 root directory outside the volume"));
                }
                if g.fsinfo == 0 || g.fsinfo >= reserved {
                    return Err(bad("a FAT32 FSInfo sector outside the reserved sectors"));
                }
                Ok(g)
            }
        }
    }

    /// Whether `c` numbers a data cluster.
    fn is_cluster(&self, c: u32) -> bool {
        (2..=self.clusters + 1).contains(&c)
    }

    fn cluster_bytes(&self) -> u32 {
        self.sectors_per_cluster * SECTOR as u32
    }

    /// Clusters needed for `bytes` of data.
    fn clusters_for(&self, bytes: u64) -> u32 {
        bytes.div_ceil(u64::from(self.cluster_bytes())) as u32
    }

    /// The first sector of data cluster `c` (one of [`Geometry::is_cluster`]).
    fn cluster_sector(&self, c: u32) -> u32 {
        self.first_data + (c - 2) * self.sectors_per_cluster
    }

    fn entry_bytes(&self) -> u32 {
        match self.fat_type {
            FatType::Fat16 => 2,
            FatType::Fat32 => 4,
        }
    }

    /// The end-of-chain mark.
    fn end_mark(&self) -> u32 {
        match self.fat_type {
            FatType::Fat16 => 0xFFFF,
            FatType::Fat32 => 0x0FFF_FFFF,
        }
    }

    /// What a FAT entry says follows.
    fn link(&self, value: u32) -> Link {
        let (end, bad_mark) = match self.fat_type {
            FatType::Fat16 => (0xFFF8, 0xFFF7),
            FatType::Fat32 => (0x0FFF_FFF8, 0x0FFF_FFF7),
        };
        match value {
            v if v >= end => Link::End,
            v if v == bad_mark => Link::Bad("a bad-cluster mark in a cluster chain"),
            0 => Link::Bad("a cluster chain that runs into a free cluster"),
            v if !self.is_cluster(v) => Link::Bad("a cluster chain pointing outside the volume"),
            v => Link::Next(v),
        }
    }
}

/// What follows a cluster in its chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Next(u32),
    End,
    Bad(&'static str),
}

/// Finds the FAT volume on `dev`: a boot sector at sector 0, else the first FAT partition
/// of an MBR. Its first sector on `dev` and its layout.
fn locate<D: BlockDevice>(dev: &D) -> Result<(u64, Geometry), ErrorKind> {
    let sectors = dev.sectors();
    let mut s0 = [0u8; SECTOR];
    dev.read(0, &mut s0)?;
    let bare = match Geometry::parse(&s0, sectors) {
        Ok(g) => return Ok((0, g)),
        Err(e) => e,
    };
    if u16_at(&s0, 510) != 0xAA55 {
        return Err(bare);
    }
    let mut gpt = false;
    for i in 0..4 {
        let e = &s0[446 + 16 * i..446 + 16 * (i + 1)];
        let (status, kind) = (e[0], e[4]);
        let (start, len) = (u64::from(u32_at(e, 8)), u64::from(u32_at(e, 12)));
        gpt |= kind == GPT_PROTECTIVE;
        if status & 0x7F != 0 || !FAT_PARTITIONS.contains(&kind) || start == 0 || len == 0 {
            continue;
        }
        if start + len > sectors {
            return Err(bad("a FAT partition past the end of the disk"));
        }
        let mut bs = [0u8; SECTOR];
        dev.read(start, &mut bs)?;
        return Geometry::parse(&bs, len).map(|g| (start, g));
    }
    if gpt {
        return Err(ErrorKind::Unsupported);
    }
    Err(bare)
}

/// The volume as a disk: Rhea's own reads and writes go to its sectors as they are; for
/// embedded-sdmmc it is a disk with a made-up MBR at block 0 and the volume from block 1
/// on, with two repairs to what the crate reads:
///
/// - FAT entries past the last cluster (the rest of the FAT's last sector) read as
///   "bad cluster", so its allocator — which checks the volume's end only once per FAT
///   sector — never hands them out (it would link a cluster past the volume into a file
///   and write there); they are written back as they are on disk;
/// - the FSInfo sector's free count reads as "unknown", so the crate keeps no count of its
///   own (it would underflow on a wrong one).
struct Disk<D> {
    dev: D,
    /// The volume's first sector on `dev`.
    start: u64,
    geo: Geometry,
}

impl<D: BlockDevice> Disk<D> {
    /// Reads volume sector `v`.
    fn read_sector(&self, v: u32, buf: &mut [u8; SECTOR]) -> Result<(), BlockError> {
        if v >= self.geo.total {
            return Err(BlockError::OutOfRange);
        }
        self.dev.read(self.start + u64::from(v), buf)
    }

    /// Writes volume sector `v`.
    fn write_sector(&self, v: u32, buf: &[u8; SECTOR]) -> Result<(), BlockError> {
        if v >= self.geo.total {
            return Err(BlockError::OutOfRange);
        }
        self.dev.write(self.start + u64::from(v), buf)
    }

    /// The made-up MBR: one FAT32-LBA partition (embedded-sdmmc takes FAT16 in it too; it
    /// goes by the cluster count) from block 1, the volume's length.
    fn mbr(&self) -> [u8; SECTOR] {
        let mut b = [0u8; SECTOR];
        b[446 + 4] = 0x0C;
        b[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
        b[446 + 12..446 + 16].copy_from_slice(&self.geo.total.to_le_bytes());
        b[510] = 0x55;
        b[511] = 0xAA;
        b
    }

    /// Where the entries past the last cluster begin in sector `v`, if it is a FAT sector
    /// holding any (the tail of each FAT copy).
    fn past_end(&self, v: u32) -> Option<usize> {
        let g = &self.geo;
        let off = v.checked_sub(g.reserved)?;
        if u64::from(off) >= u64::from(g.fats) * u64::from(g.fat_sectors) {
            return None;
        }
        let first_byte = u64::from(off % g.fat_sectors) * SECTOR as u64;
        let end_byte = (u64::from(g.clusters) + 2) * u64::from(g.entry_bytes());
        match end_byte.checked_sub(first_byte) {
            Some(n) if n >= SECTOR as u64 => None,
            Some(n) => Some(n as usize),
            None => Some(0),
        }
    }

    /// The sector as embedded-sdmmc is shown it.
    fn shown_to_crate(&self, v: u32, buf: &mut [u8; SECTOR]) {
        let g = &self.geo;
        if g.fat_type == FatType::Fat32 && v == g.fsinfo {
            buf[488..492].copy_from_slice(&u32::MAX.to_le_bytes());
        }
        if let Some(from) = self.past_end(v) {
            let bad_mark: &[u8] = match g.fat_type {
                FatType::Fat16 => &[0xF7, 0xFF],
                FatType::Fat32 => &[0xF7, 0xFF, 0xFF, 0x0F],
            };
            for entry in buf[from..].chunks_exact_mut(bad_mark.len()) {
                entry.copy_from_slice(bad_mark);
            }
        }
    }

    /// A sector embedded-sdmmc writes, with the entries past the last cluster as they are
    /// on disk (not the marks it was shown).
    fn written_by_crate(&self, v: u32, buf: &mut [u8; SECTOR]) -> Result<(), BlockError> {
        if let Some(from) = self.past_end(v) {
            let mut now = [0u8; SECTOR];
            self.read_sector(v, &mut now)?;
            buf[from..].copy_from_slice(&now[from..]);
        }
        Ok(())
    }
}

impl<D: BlockDevice> sd::BlockDevice for Disk<D> {
    type Error = BlockError;

    fn read(&self, blocks: &mut [sd::Block], start: sd::BlockIdx) -> Result<(), BlockError> {
        for (i, b) in blocks.iter_mut().enumerate() {
            let n = u64::from(start.0) + i as u64;
            if n == 0 {
                b.contents = self.mbr();
                continue;
            }
            let v = u32::try_from(n - 1).map_err(|_| BlockError::OutOfRange)?;
            self.read_sector(v, &mut b.contents)?;
            self.shown_to_crate(v, &mut b.contents);
        }
        Ok(())
    }

    fn write(&self, blocks: &[sd::Block], start: sd::BlockIdx) -> Result<(), BlockError> {
        for (i, b) in blocks.iter().enumerate() {
            let n = u64::from(start.0) + i as u64;
            let v = n
                .checked_sub(1)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or(BlockError::OutOfRange)?;
            let mut copy = b.contents;
            self.written_by_crate(v, &mut copy)?;
            self.write_sector(v, &copy)?;
        }
        Ok(())
    }

    fn num_blocks(&self) -> Result<sd::BlockCount, BlockError> {
        Ok(sd::BlockCount(self.geo.total + 1))
    }
}

/// embedded-sdmmc's clock: the DOS epoch, 1980-01-01 00:00 (there is no clock here).
#[derive(Clone, Copy, Debug)]
struct DosEpoch;

impl sd::TimeSource for DosEpoch {
    fn get_timestamp(&self) -> sd::Timestamp {
        sd::Timestamp {
            year_since_1970: 10,
            zero_indexed_month: 0,
            zero_indexed_day: 0,
            hours: 0,
            minutes: 0,
            seconds: 0,
        }
    }
}

/// The FAT, a sector at a time (one cached). A change goes to every copy of the FAT when
/// the cache moves to another sector or is flushed (as embedded-sdmmc writes them).
struct Fat<'a, D> {
    disk: &'a Disk<D>,
    /// The cached sector, as an index into a FAT copy.
    at: Option<u32>,
    buf: [u8; SECTOR],
    dirty: bool,
}

impl<'a, D: BlockDevice> Fat<'a, D> {
    fn new(disk: &'a Disk<D>) -> Self {
        Fat {
            disk,
            at: None,
            buf: [0; SECTOR],
            dirty: false,
        }
    }

    /// The cache at cluster `c`'s entry: its offset in `buf`.
    fn load(&mut self, c: u32) -> Result<usize, ErrorKind> {
        let g = &self.disk.geo;
        if c > g.clusters + 1 {
            return Err(bad("a cluster number outside the volume"));
        }
        let byte = u64::from(c) * u64::from(g.entry_bytes());
        let k = (byte / SECTOR as u64) as u32;
        if self.at != Some(k) {
            self.flush()?;
            self.at = None;
            self.disk.read_sector(g.reserved + k, &mut self.buf)?;
            self.at = Some(k);
        }
        Ok((byte % SECTOR as u64) as usize)
    }

    /// Cluster `c`'s entry (FAT32: its low 28 bits).
    fn get(&mut self, c: u32) -> Result<u32, ErrorKind> {
        let at = self.load(c)?;
        Ok(match self.disk.geo.fat_type {
            FatType::Fat16 => u32::from(u16_at(&self.buf, at)),
            FatType::Fat32 => u32_at(&self.buf, at) & 0x0FFF_FFFF,
        })
    }

    fn link(&mut self, c: u32) -> Result<Link, ErrorKind> {
        let v = self.get(c)?;
        Ok(self.disk.geo.link(v))
    }

    /// Sets cluster `c`'s entry (FAT32: its high 4 bits kept, as the specification asks).
    fn set(&mut self, c: u32, value: u32) -> Result<(), ErrorKind> {
        let at = self.load(c)?;
        match self.disk.geo.fat_type {
            FatType::Fat16 => self.buf[at..at + 2].copy_from_slice(&(value as u16).to_le_bytes()),
            FatType::Fat32 => {
                let v = (u32_at(&self.buf, at) & 0xF000_0000) | (value & 0x0FFF_FFFF);
                self.buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        self.dirty = true;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        if let (true, Some(k)) = (self.dirty, self.at) {
            let g = self.disk.geo;
            for copy in 0..g.fats {
                self.disk
                    .write_sector(g.reserved + copy * g.fat_sectors + k, &self.buf)?;
            }
        }
        self.dirty = false;
        Ok(())
    }

    /// Walks the chain from `first`, calling `each` with every cluster, until it ends or
    /// `limit` clusters were seen (the rest not looked at); how many were seen. Every link
    /// must stay inside the volume, and the chain must not loop: Brent's cycle detection
    /// (a saved cluster moved to the walker at each power of two) finds a loop within about
    /// twice its length after it is entered; the walk also stops past the volume's cluster
    /// count. RT: bounded by `min(limit, clusters)` FAT lookups.
    fn walk(
        &mut self,
        first: u32,
        limit: u32,
        mut each: impl FnMut(u32) -> Result<(), ErrorKind>,
    ) -> Result<u32, ErrorKind> {
        if !self.disk.geo.is_cluster(first) {
            return Err(bad("a first cluster outside the volume"));
        }
        if limit == 0 {
            return Ok(0);
        }
        each(first)?;
        let (mut cur, mut seen) = (first, 1u32);
        let (mut saved, mut power, mut steps) = (first, 1u32, 0u32);
        while seen < limit {
            let next = match self.link(cur)? {
                Link::End => return Ok(seen),
                Link::Bad(why) => return Err(bad(why)),
                Link::Next(n) => n,
            };
            if next == saved || seen > self.disk.geo.clusters {
                return Err(bad("a cluster chain that loops"));
            }
            steps += 1;
            if steps == power {
                saved = next;
                power = power.saturating_mul(2);
                steps = 0;
            }
            cur = next;
            seen += 1;
            each(cur)?;
        }
        Ok(seen)
    }

    /// The whole chain's length (checked as [`Fat::walk`] does).
    fn chain_len(&mut self, first: u32) -> Result<u32, ErrorKind> {
        self.walk(first, u32::MAX, |_| Ok(()))
    }

    /// The `n`th cluster (from 0) of a chain already checked to be that long.
    fn nth(&mut self, first: u32, n: u32) -> Result<u32, ErrorKind> {
        let mut last = first;
        let seen = self.walk(first, n + 1, |c| {
            last = c;
            Ok(())
        })?;
        if seen <= n {
            return Err(bad("a cluster chain shorter than its file"));
        }
        Ok(last)
    }

    /// Frees the chain from `first` (checked before: no loop); how many clusters.
    fn free_chain(&mut self, first: u32) -> Result<u32, ErrorKind> {
        let (mut cur, mut freed) = (first, 0u32);
        loop {
            let link = self.link(cur)?;
            self.set(cur, 0)?;
            freed += 1;
            match link {
                Link::Next(n) if freed <= self.disk.geo.clusters => cur = n,
                _ => break,
            }
        }
        self.flush()?;
        Ok(freed)
    }

    /// Free clusters. RT: reads the whole FAT.
    fn count_free(&mut self) -> Result<u32, ErrorKind> {
        let mut free = 0;
        for c in 2..=self.disk.geo.clusters + 1 {
            if self.get(c)? == 0 {
                free += 1;
            }
        }
        Ok(free)
    }
}

/// A directory: FAT16's fixed root, or a cluster chain (FAT32's root included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DirLoc {
    Root,
    Cluster(u32),
}

/// The sectors of directory `loc`, its chain checked whole (no loop, inside the volume, at
/// most [`MAX_DIR_SLOTS`] slots): after this, embedded-sdmmc may walk it.
fn dir_sectors<D: BlockDevice>(disk: &Disk<D>, loc: DirLoc) -> Result<Vec<u32>, ErrorKind> {
    let g = &disk.geo;
    let first = match (loc, g.fat_type) {
        (DirLoc::Root, FatType::Fat16) => {
            return Ok((g.root_start..g.root_start + g.root_sectors).collect());
        }
        (DirLoc::Root, FatType::Fat32) => g.root_cluster,
        (DirLoc::Cluster(c), _) => c,
    };
    let most = ((MAX_DIR_SLOTS * SLOT) as u32).div_ceil(g.cluster_bytes());
    let mut sectors = Vec::new();
    let seen = Fat::new(disk).walk(first, most + 1, |c| {
        let s = g.cluster_sector(c);
        sectors.extend(s..s + g.sectors_per_cluster);
        Ok(())
    })?;
    if seen > most {
        return Err(bad("a directory longer than FAT's 65536 entries (a loop?)"));
    }
    Ok(sectors)
}

/// A long name being gathered from its slots (which come last part first).
struct Lfn {
    units: [u16; 20 * 13],
    /// Its slots: how many the first one said.
    total: u8,
    /// The sequence number the next slot must have (0: complete).
    next: u8,
    checksum: u8,
    slots: Vec<(u32, usize)>,
}

impl Lfn {
    /// The run after long-name slot `slot` (at sector and offset `at`), following `prev`.
    fn step(prev: Option<Lfn>, slot: &[u8; SLOT], at: (u32, usize)) -> Option<Lfn> {
        let (order, checksum) = (slot[0], slot[13]);
        let seq = order & 0x1F;
        if seq == 0 || seq > 20 {
            return None;
        }
        let mut l = if order & 0x40 != 0 {
            Lfn {
                units: [0xFFFF; 20 * 13],
                total: seq,
                next: seq,
                checksum,
                slots: Vec::new(),
            }
        } else {
            match prev {
                Some(l) if l.next == seq && l.checksum == checksum => l,
                _ => return None,
            }
        };
        let base = usize::from(seq - 1) * 13;
        for (k, &o) in LFN_UNITS.iter().enumerate() {
            l.units[base + k] = u16_at(slot, o);
        }
        l.next = seq - 1;
        l.slots.push(at);
        Some(l)
    }

    /// The name, if the run is complete and belongs to short name `sfn`.
    fn finish(self, sfn: &Sfn) -> Option<(String, Vec<(u32, usize)>)> {
        if self.next != 0 || self.checksum != checksum(sfn) {
            return None;
        }
        let units = &self.units[..usize::from(self.total) * 13];
        let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
        let name = char::decode_utf16(units[..end].iter().copied())
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect();
        Some((name, self.slots))
    }
}

/// The long-name checksum of a short name.
fn checksum(sfn: &Sfn) -> u8 {
    sfn.iter()
        .fold(0u8, |sum, &b| sum.rotate_right(1).wrapping_add(b))
}

fn trim(b: &[u8]) -> &[u8] {
    let end = b.iter().rposition(|&c| c != b' ').map_or(0, |i| i + 1);
    &b[..end]
}

/// A short name as shown: `BASE.EXT`, lower case where the NT case bits say, `0x05` as
/// `0xE5`, bytes past ASCII as Latin-1, control characters and `/` as `_`.
fn short_name(sfn: &Sfn, case: u8) -> String {
    let show = |b: u8, lower: bool| -> char {
        match b {
            b'A'..=b'Z' if lower => char::from(b.to_ascii_lowercase()),
            b'/' | 0..0x20 | 0x7F => '_',
            _ => char::from(b),
        }
    };
    let mut s = String::new();
    let base = trim(&sfn[..8]);
    for (i, &b) in base.iter().enumerate() {
        let b = if i == 0 && b == 0x05 { 0xE5 } else { b };
        s.push(show(b, case & CASE_LOWER_BASE != 0));
    }
    if base.is_empty() {
        s.push('_');
    }
    let ext = trim(&sfn[8..]);
    if !ext.is_empty() {
        s.push('.');
        for &b in ext {
            s.push(show(b, case & CASE_LOWER_EXT != 0));
        }
    }
    s
}

/// The short name and case bits for a name being created: 8.3, ASCII, each part in one
/// case.
fn make_short_name(name: &str) -> Result<(Sfn, u8), ErrorKind> {
    const NOT_83: ErrorKind =
        ErrorKind::InvalidName("FAT here creates 8.3 names only (no long names)");
    let (base, ext) = name.split_once('.').unwrap_or((name, ""));
    if base.is_empty()
        || base.len() > 8
        || ext.len() > 3
        || ext.contains('.')
        || (ext.is_empty() && name.ends_with('.'))
    {
        return Err(NOT_83);
    }
    let mut sfn = [b' '; 11];
    let mut case = 0;
    for (part, at, bit) in [(base, 0, CASE_LOWER_BASE), (ext, 8, CASE_LOWER_EXT)] {
        let lower = part.bytes().any(|b| b.is_ascii_lowercase());
        if lower && part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ErrorKind::InvalidName(
                "FAT here cannot keep mixed case in an 8.3 name (no long names)",
            ));
        }
        if lower {
            case |= bit;
        }
        for (i, b) in part.bytes().enumerate() {
            if !(b.is_ascii_alphanumeric() || b"!#$%&'()-@^_`{}~".contains(&b)) {
                return Err(NOT_83);
            }
            sfn[at + i] = b.to_ascii_uppercase();
        }
    }
    Ok((sfn, case))
}

/// embedded-sdmmc's form of short name `sfn`, if its parser gives those very bytes back
/// (it refuses spaces inside a name and upper-cases).
fn crate_name(sfn: &Sfn) -> Result<sd::ShortFileName, ErrorKind> {
    let (base, ext) = (trim(&sfn[..8]), trim(&sfn[8..]));
    let mut s = String::new();
    s.extend(base.iter().map(|&b| char::from(b)));
    if !ext.is_empty() {
        s.push('.');
        s.extend(ext.iter().map(|&b| char::from(b)));
    }
    match sd::ShortFileName::create_from_str(&s) {
        Ok(n) if n.base_name() == base && n.extension() == ext => Ok(n),
        // A short name the crate cannot open by (a space inside, lower-case bytes).
        _ => Err(ErrorKind::Unsupported),
    }
}

fn crate_names(path: &[Sfn]) -> Result<Vec<sd::ShortFileName>, ErrorKind> {
    path.iter().map(crate_name).collect()
}

/// A short entry of a directory (with its long name, if it has one), as read.
#[derive(Clone, Debug)]
struct Entry {
    /// The name listed: the long name, else the short one.
    name: String,
    /// The short name as shown.
    short: String,
    sfn: Sfn,
    attr: u8,
    cluster: u32,
    size: u32,
    /// The 32 bytes as read.
    raw: [u8; SLOT],
    /// Where the short entry is: volume sector and byte offset.
    sector: u32,
    offset: usize,
    /// The long-name slots that belong to it.
    lfn: Vec<(u32, usize)>,
    /// Listed and found by name (not a volume label, `.`, `..`, or an unshowable name).
    visible: bool,
}

impl Entry {
    fn parse(g: &Geometry, slot: &[u8; SLOT], at: (u32, usize), lfn: Option<Lfn>) -> Entry {
        let mut sfn = [0u8; 11];
        sfn.copy_from_slice(&slot[..11]);
        let attr = slot[11];
        let hi = match g.fat_type {
            FatType::Fat16 => 0,
            FatType::Fat32 => u32::from(u16_at(slot, 20)) << 16,
        };
        let short = short_name(&sfn, slot[12]);
        let (long, lfn) = match lfn.and_then(|l| l.finish(&sfn)) {
            Some((n, slots)) => (Some(n).filter(|n| path::check_name(n).is_ok()), slots),
            None => (None, Vec::new()),
        };
        let name = long.unwrap_or_else(|| short.clone());
        let visible = attr & ATTR_VOLUME == 0
            && sfn != DOT
            && sfn != DOT_DOT
            && path::check_name(&name).is_ok();
        Entry {
            name,
            short,
            sfn,
            attr,
            cluster: hi | u32::from(u16_at(slot, 26)),
            size: u32_at(slot, 28),
            raw: *slot,
            sector: at.0,
            offset: at.1,
            lfn,
            visible,
        }
    }

    fn is_dir(&self) -> bool {
        self.attr & ATTR_DIR != 0
    }

    fn kind(&self) -> FileType {
        if self.is_dir() {
            FileType::Dir
        } else {
            FileType::File
        }
    }

    fn matches(&self, name: &str) -> bool {
        self.visible
            && (self.name.eq_ignore_ascii_case(name) || self.short.eq_ignore_ascii_case(name))
    }

    /// The directory it is.
    fn dir_loc(&self, g: &Geometry) -> Result<DirLoc, ErrorKind> {
        if !self.is_dir() {
            return Err(ErrorKind::NotADirectory);
        }
        if !g.is_cluster(self.cluster) {
            // Cluster 0 would be the root (as `..` says it): a loop in the tree.
            return Err(bad("a directory entry without a valid first cluster"));
        }
        Ok(DirLoc::Cluster(self.cluster))
    }

    /// Checks a file's first cluster against its size.
    fn check_file(&self, g: &Geometry) -> Result<(), ErrorKind> {
        match self.cluster {
            0 if self.size == 0 => Ok(()),
            0 => Err(bad("a file with data but no first cluster")),
            c if g.is_cluster(c) => Ok(()),
            _ => Err(bad("a file whose first cluster is outside the volume")),
        }
    }

    /// Metadata's number for it: where its short entry is.
    fn ino(&self) -> u64 {
        u64::from(self.sector) * (SECTOR / SLOT) as u64 + (self.offset / SLOT) as u64 + 2
    }
}

/// What a directory scan meets, in order.
enum Seen<'a> {
    /// A short entry (a file, a directory, a volume label, `.`, `..`).
    Entry(&'a Entry),
    /// A long-name slot: its first 11 bytes (what embedded-sdmmc compares with short names).
    Lfn(&'a Sfn),
    /// A free slot (deleted, or the end mark, after which the scan stops).
    Free,
}

/// Reads directory `sectors` slot by slot, up to the end mark, until `each` breaks.
fn scan<D: BlockDevice>(
    disk: &Disk<D>,
    sectors: &[u32],
    each: &mut dyn FnMut(Seen<'_>) -> ControlFlow<()>,
) -> Result<(), ErrorKind> {
    let mut buf = [0u8; SECTOR];
    let mut lfn: Option<Lfn> = None;
    for &s in sectors {
        disk.read_sector(s, &mut buf)?;
        let (slots, _) = buf.as_chunks::<SLOT>();
        for (i, slot) in slots.iter().enumerate() {
            let at = (s, i * SLOT);
            let seen = match slot[0] {
                0x00 => {
                    let _ = each(Seen::Free);
                    return Ok(());
                }
                0xE5 => {
                    lfn = None;
                    each(Seen::Free)
                }
                _ if slot[11] & 0x3F == ATTR_LFN => {
                    lfn = Lfn::step(lfn.take(), slot, at);
                    let mut first = [0u8; 11];
                    first.copy_from_slice(&slot[..11]);
                    each(Seen::Lfn(&first))
                }
                _ => each(Seen::Entry(&Entry::parse(&disk.geo, slot, at, lfn.take()))),
            };
            if seen.is_break() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The entry embedded-sdmmc's by-name search would find for `sfn` in directory `sectors`
/// (the first valid slot with those 11 bytes); an error if that is not a visible short
/// entry (a long-name slot or a volume label in the way).
fn find_sfn<D: BlockDevice>(
    disk: &Disk<D>,
    sectors: &[u32],
    sfn: &Sfn,
) -> Result<Option<Entry>, ErrorKind> {
    let mut found = Ok(None);
    scan(disk, sectors, &mut |seen| match seen {
        Seen::Entry(e) if e.sfn == *sfn => {
            found = if e.visible {
                Ok(Some(e.clone()))
            } else {
                Err(bad("a short name another directory slot shadows"))
            };
            ControlFlow::Break(())
        }
        Seen::Lfn(b) if b == sfn => {
            found = Err(bad("a short name a long-name slot shadows"));
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })?;
    found
}

/// The first visible entry of directory `sectors` named `name` (long or short name, ASCII
/// case ignored, as FAT compares names).
fn find_name<D: BlockDevice>(
    disk: &Disk<D>,
    sectors: &[u32],
    name: &str,
) -> Result<Option<Entry>, ErrorKind> {
    let mut found = None;
    scan(disk, sectors, &mut |seen| match seen {
        Seen::Entry(e) if e.matches(name) => {
            found = Some(e.clone());
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })?;
    Ok(found)
}

/// What a path names on disk.
enum Found {
    Root,
    Entry(Entry),
}

/// Walks `path` (short names) from the root, each directory's chain checked; a name that is
/// gone is [`ErrorKind::Stale`] (handles hold paths).
fn resolve<D: BlockDevice>(disk: &Disk<D>, path: &[Sfn]) -> Result<Found, ErrorKind> {
    let mut found = Found::Root;
    for sfn in path {
        let loc = match &found {
            Found::Root => DirLoc::Root,
            Found::Entry(e) => e.dir_loc(&disk.geo).map_err(|k| match k {
                ErrorKind::NotADirectory => ErrorKind::Stale,
                k => k,
            })?,
        };
        let sectors = dir_sectors(disk, loc)?;
        let e = find_sfn(disk, &sectors, sfn)?.ok_or(ErrorKind::Stale)?;
        found = Found::Entry(e);
    }
    Ok(found)
}

/// The directory `found` is.
fn loc_of(g: &Geometry, found: &Found) -> Result<DirLoc, ErrorKind> {
    match found {
        Found::Root => Ok(DirLoc::Root),
        Found::Entry(e) => e.dir_loc(g),
    }
}

/// Rewrites the 32 bytes of entry `e` on disk with `change` applied (if its slot still
/// holds it).
fn update_entry<D: BlockDevice>(
    disk: &Disk<D>,
    e: &Entry,
    change: impl FnOnce(&mut [u8]),
) -> Result<(), ErrorKind> {
    let mut buf = [0u8; SECTOR];
    disk.read_sector(e.sector, &mut buf)?;
    let slot = &mut buf[e.offset..e.offset + SLOT];
    if slot[..11] != e.sfn {
        return Err(ErrorKind::Stale);
    }
    change(slot);
    Ok(disk.write_sector(e.sector, &buf)?)
}

/// Seconds since 1970 of a DOS date and time, if they are a valid one.
fn dos_time(date: u16, time: u16) -> Option<u64> {
    let (y, m, d) = (
        1980 + i64::from(date >> 9),
        i64::from((date >> 5) & 0xF),
        i64::from(date & 0x1F),
    );
    let (h, min, s) = (
        u64::from(time >> 11),
        u64::from((time >> 5) & 0x3F),
        u64::from(time & 0x1F) * 2,
    );
    if !(1..=12).contains(&m) || d == 0 || h > 23 || min > 59 || s > 59 {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days)
        .ok()
        .map(|days| days * 86_400 + h * 3600 + min * 60 + s)
}

/// What an embedded-sdmmc error means.
fn sd_error(e: sd::Error<BlockError>) -> ErrorKind {
    use sd::Error as E;
    match e {
        E::DeviceError(d) => d.into(),
        E::FormatError(why) => ErrorKind::Io(why),
        E::NoSuchVolume => bad("no FAT volume"),
        E::FilenameError(_) => ErrorKind::InvalidName("not an 8.3 name"),
        E::TooManyOpenVolumes => bad("embedded-sdmmc's table of open volumes is full"),
        E::TooManyOpenDirs => bad("embedded-sdmmc's table of open directories is full"),
        E::TooManyOpenFiles => bad("embedded-sdmmc's table of open files is full"),
        E::BadHandle => bad("embedded-sdmmc lost a handle"),
        E::NotFound => ErrorKind::NotFound,
        E::FileAlreadyOpen | E::DirAlreadyOpen | E::VolumeStillInUse | E::VolumeAlreadyOpen => {
            ErrorKind::Busy
        }
        E::OpenedDirAsFile => ErrorKind::IsADirectory,
        E::OpenedFileAsDir => ErrorKind::NotADirectory,
        E::DeleteNonEmptyDir => ErrorKind::DirectoryNotEmpty,
        E::Unsupported | E::BadBlockSize(_) => ErrorKind::Unsupported,
        E::EndOfFile => bad("a cluster chain shorter than its file"),
        E::BadCluster => bad("a bad-cluster mark in a cluster chain"),
        E::ConversionError => bad("embedded-sdmmc: a number out of range"),
        E::NotEnoughSpace | E::DiskFull => ErrorKind::NoSpace,
        E::AllocationError => bad("embedded-sdmmc could not use a cluster it allocated"),
        E::UnterminatedFatChain => bad("a cluster chain that runs into a free cluster"),
        E::ReadOnly => ErrorKind::ReadOnly,
        E::FileAlreadyExists | E::DirAlreadyExists => ErrorKind::AlreadyExists,
        E::InvalidOffset => ErrorKind::InvalidArgument("an offset past the end of the file"),
        E::LockError => bad("embedded-sdmmc was entered twice"),
    }
}

/// A handle's node: its short-name path from the root.
#[derive(Debug)]
struct Node {
    path: Vec<Sfn>,
    kind: FileType,
    handles: u32,
    generation: u32,
}

/// The handles given out: a slab (slot and generation make the handle, so a released one
/// is [`ErrorKind::Stale`], never another node), one slot per path.
#[derive(Debug)]
struct Nodes {
    slots: Vec<Option<Node>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    by_path: BTreeMap<Vec<Sfn>, u32>,
}

impl Nodes {
    fn new() -> Nodes {
        let root = Node {
            path: Vec::new(),
            kind: FileType::Dir,
            handles: 0,
            generation: 0,
        };
        Nodes {
            slots: alloc::vec![Some(root)],
            generations: alloc::vec![0],
            free: Vec::new(),
            by_path: BTreeMap::new(),
        }
    }

    fn get(&self, id: NodeId) -> Result<&Node, ErrorKind> {
        match self.slots.get((id & 0xffff_ffff) as usize) {
            Some(Some(n)) if n.generation == (id >> 32) as u32 => Ok(n),
            _ => Err(ErrorKind::Stale),
        }
    }

    /// A handle to `path` (one more on its slot if it has one).
    fn acquire(&mut self, path: Vec<Sfn>, kind: FileType) -> Result<NodeId, ErrorKind> {
        if let Some(&slot) = self.by_path.get(&path)
            && let Some(Some(n)) = self.slots.get_mut(slot as usize)
        {
            n.handles = n.handles.checked_add(1).ok_or(ErrorKind::OutOfMemory)?;
            return Ok((u64::from(n.generation) << 32) | u64::from(slot));
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                if self.slots.len() >= u32::MAX as usize {
                    return Err(ErrorKind::OutOfMemory);
                }
                self.slots
                    .try_reserve(1)
                    .and_then(|()| self.generations.try_reserve(1))
                    .map_err(|_| ErrorKind::OutOfMemory)?;
                self.slots.push(None);
                self.generations.push(0);
                (self.slots.len() - 1) as u32
            }
        };
        let generation = self.generations[slot as usize];
        self.by_path.insert(path.clone(), slot);
        self.slots[slot as usize] = Some(Node {
            path,
            kind,
            handles: 1,
            generation,
        });
        Ok((u64::from(generation) << 32) | u64::from(slot))
    }

    fn release(&mut self, id: NodeId) {
        let slot = (id & 0xffff_ffff) as usize;
        if slot == 0 || self.get(id).is_err() {
            return;
        }
        let Some(Some(n)) = self.slots.get_mut(slot) else {
            return;
        };
        n.handles = n.handles.saturating_sub(1);
        if n.handles > 0 {
            return;
        }
        if let Some(n) = self.slots[slot].take() {
            self.by_path.remove(&n.path);
        }
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        self.free.push(slot as u32);
    }

    /// Whether a handle names `path` or something below it.
    fn is_held(&self, path: &[Sfn]) -> bool {
        self.by_path
            .range(path.to_vec()..)
            .next()
            .is_some_and(|(p, _)| p.starts_with(path))
    }

    fn live(&self) -> u64 {
        (self.slots.len() - self.free.len()) as u64
    }
}

type Manager<D> = sd::VolumeManager<Disk<D>, DosEpoch, MAX_DIRS, MAX_FILES, 1>;

struct Inner<D: BlockDevice> {
    vm: Manager<D>,
    volume: sd::RawVolume,
    geo: Geometry,
    nodes: Nodes,
    /// Free clusters, once counted.
    free: Option<u32>,
    /// Whether the FSInfo free count was set to "unknown" yet.
    fsinfo_cleared: bool,
    read_only: bool,
}

impl<D: BlockDevice> Inner<D> {
    /// Runs `f` on the disk as it is (embedded-sdmmc's one-sector cache is dropped: what
    /// `f` writes, the crate reads afresh).
    fn raw<X>(&self, f: impl FnOnce(&Disk<D>) -> Result<X, ErrorKind>) -> Result<X, ErrorKind> {
        self.vm.device(|d| f(d))
    }

    fn writable(&self) -> Result<(), ErrorKind> {
        if self.read_only {
            Err(ErrorKind::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// The path of `node`, which must be a `want` (if given): a directory where a file is
    /// wanted is [`ErrorKind::IsADirectory`], the reverse [`ErrorKind::NotADirectory`].
    fn path(&self, node: NodeId, want: Option<FileType>) -> Result<Vec<Sfn>, ErrorKind> {
        let n = self.nodes.get(node)?;
        match (want, n.kind) {
            (Some(FileType::File), FileType::Dir) => return Err(ErrorKind::IsADirectory),
            (Some(FileType::Dir), FileType::File) => return Err(ErrorKind::NotADirectory),
            _ => {}
        }
        let mut p = Vec::new();
        p.try_reserve(n.path.len())
            .map_err(|_| ErrorKind::OutOfMemory)?;
        p.extend_from_slice(&n.path);
        Ok(p)
    }

    /// The file `path` names (a directory: [`ErrorKind::IsADirectory`]), its first cluster
    /// checked against its size.
    fn file(&self, path: &[Sfn]) -> Result<Entry, ErrorKind> {
        let g = self.geo;
        self.raw(|d| match resolve(d, path)? {
            Found::Entry(e) if !e.is_dir() => {
                e.check_file(&g)?;
                Ok(e)
            }
            _ => Err(ErrorKind::IsADirectory),
        })
    }

    /// The length of file `e`'s chain, checked whole and against its size.
    fn chain_len(&self, e: &Entry) -> Result<u32, ErrorKind> {
        if e.cluster == 0 {
            return Ok(0);
        }
        let len = self.raw(|d| Fat::new(d).chain_len(e.cluster))?;
        if len < self.geo.clusters_for(u64::from(e.size)) {
            return Err(bad("a cluster chain shorter than its file"));
        }
        Ok(len)
    }

    /// Opens the directory at `path` in embedded-sdmmc, runs `f` in it, closes it.
    fn in_dir<X>(
        &self,
        path: &[sd::ShortFileName],
        f: impl FnOnce(&Manager<D>, sd::RawDirectory) -> Result<X, sd::Error<BlockError>>,
    ) -> Result<X, ErrorKind> {
        let vm = &self.vm;
        let mut d = vm.open_root_dir(self.volume).map_err(sd_error)?;
        for name in path {
            let next = vm.open_dir(d, name);
            let _ = vm.close_dir(d);
            d = next.map_err(sd_error)?;
        }
        let r = f(vm, d);
        let _ = vm.close_dir(d);
        r.map_err(sd_error)
    }

    /// Free clusters (counted from the FAT the first time).
    fn free_clusters(&mut self) -> Result<u32, ErrorKind> {
        if let Some(f) = self.free {
            return Ok(f);
        }
        let f = self.raw(|d| Fat::new(d).count_free())?;
        self.free = Some(f);
        Ok(f)
    }

    /// Fails with [`ErrorKind::NoSpace`] unless `need` clusters can be allocated and one
    /// left free (see the module documentation).
    fn reserve(&mut self, need: u32) -> Result<(), ErrorKind> {
        if need == 0 {
            return Ok(());
        }
        if self.free_clusters()? <= need {
            return Err(ErrorKind::NoSpace);
        }
        Ok(())
    }

    /// After a change: the FSInfo free count made "unknown" (once), the device flushed.
    fn finish(&mut self) -> Result<(), ErrorKind> {
        if self.geo.fat_type == FatType::Fat32 && !self.fsinfo_cleared {
            let at = self.geo.fsinfo;
            self.raw(|d| {
                let mut buf = [0u8; SECTOR];
                d.read_sector(at, &mut buf)?;
                buf[488..492].copy_from_slice(&u32::MAX.to_le_bytes());
                Ok(d.write_sector(at, &buf)?)
            })?;
            self.fsinfo_cleared = true;
        }
        self.raw(|d| Ok(d.dev.flush()?))
    }

    /// Writes `data` at `at` into file `e` (at `path`) through embedded-sdmmc, first zeros
    /// from its end to `at` if `at` is past it; then puts back what the crate's rewrite of
    /// the entry loses (case bits, creation time, access date).
    fn write_through(
        &mut self,
        path: &[Sfn],
        e: &Entry,
        at: u32,
        data: &[u8],
    ) -> Result<(), ErrorKind> {
        let names = crate_names(path)?;
        let (name, dir) = names.split_last().ok_or(ErrorKind::IsADirectory)?;
        let r = self.in_dir(dir, |vm, d| {
            let f = vm.open_file_in_dir(d, name, sd::Mode::ReadWriteAppend)?;
            let w = (|| -> Result<(), sd::Error<BlockError>> {
                // Opened for appending: at the end.
                let mut pos = e.size;
                while pos < at {
                    let n = (at - pos).min(ZEROS.len() as u32);
                    vm.write(f, &ZEROS[..n as usize])?;
                    pos += n;
                }
                vm.file_seek_from_start(f, at)?;
                if !data.is_empty() {
                    vm.write(f, data)?;
                }
                Ok(())
            })();
            let closed = vm.close_file(f);
            w.and(closed)
        });
        let fixed =
            self.raw(|d| update_entry(d, e, |slot| slot[12..20].copy_from_slice(&e.raw[12..20])));
        r.and(fixed)
    }

    fn lookup(&mut self, dir: NodeId, name: &str) -> Result<NodeId, ErrorKind> {
        path::check_name(name)?;
        let mut p = self.path(dir, Some(FileType::Dir))?;
        let g = self.geo;
        let e = self.raw(|d| {
            let loc = loc_of(&g, &resolve(d, &p)?)?;
            let sectors = dir_sectors(d, loc)?;
            let e = find_name(d, &sectors, name)?.ok_or(ErrorKind::NotFound)?;
            // Walks go by the short name: it must lead back to this entry.
            match find_sfn(d, &sectors, &e.sfn)? {
                Some(f) if (f.sector, f.offset) == (e.sector, e.offset) => Ok(e),
                _ => Err(bad("two entries with one short name")),
            }
        })?;
        p.push(e.sfn);
        self.nodes.acquire(p, e.kind())
    }

    fn metadata(&self, node: NodeId) -> Result<Metadata, ErrorKind> {
        let p = self.path(node, None)?;
        let g = self.geo;
        self.raw(|d| {
            let found = resolve(d, &p)?;
            let count = |loc| -> Result<u64, ErrorKind> {
                let sectors = dir_sectors(d, loc)?;
                let mut n = 0;
                scan(d, &sectors, &mut |seen| {
                    if let Seen::Entry(e) = seen
                        && e.visible
                    {
                        n += 1;
                    }
                    ControlFlow::Continue(())
                })?;
                Ok(n)
            };
            Ok(match &found {
                Found::Root => Metadata {
                    kind: FileType::Dir,
                    len: count(DirLoc::Root)?,
                    perm: 0o755,
                    ino: 1,
                    modified: None,
                },
                Found::Entry(e) => Metadata {
                    kind: e.kind(),
                    len: if e.is_dir() {
                        count(e.dir_loc(&g)?)?
                    } else {
                        u64::from(e.size)
                    },
                    perm: match (e.is_dir(), e.attr & ATTR_READ_ONLY != 0) {
                        (true, _) => 0o755,
                        (false, true) => 0o444,
                        (false, false) => 0o644,
                    },
                    ino: e.ino(),
                    modified: dos_time(u16_at(&e.raw, 24), u16_at(&e.raw, 22)),
                },
            })
        })
    }

    fn read(&self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let p = self.path(node, Some(FileType::File))?;
        let e = self.file(&p)?;
        let size = u64::from(e.size);
        if offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let n = (size - offset).min(buf.len() as u64) as usize;
        // The chain as far as embedded-sdmmc will walk it.
        let need = self.geo.clusters_for(offset + n as u64);
        let have = self.raw(|d| Fat::new(d).walk(e.cluster, need, |_| Ok(())))?;
        if have < need {
            return Err(bad("a cluster chain shorter than its file"));
        }
        let names = crate_names(&p)?;
        let (name, dir) = names.split_last().ok_or(ErrorKind::IsADirectory)?;
        let got = self.in_dir(dir, |vm, d| {
            let f = vm.open_file_in_dir(d, name, sd::Mode::ReadOnly)?;
            let r = vm
                .file_seek_from_start(f, offset as u32)
                .and_then(|()| vm.read(f, &mut buf[..n]));
            let closed = vm.close_file(f);
            r.and_then(|got| closed.map(|()| got))
        })?;
        Ok(got)
    }

    fn read_dir(
        &self,
        dir: NodeId,
        from: usize,
        each: &mut dyn FnMut(usize, &str, FileType) -> bool,
    ) -> Result<(), ErrorKind> {
        let p = self.path(dir, Some(FileType::Dir))?;
        let g = self.geo;
        self.raw(|d| {
            let loc = loc_of(&g, &resolve(d, &p)?)?;
            let sectors = dir_sectors(d, loc)?;
            let mut index = 0;
            scan(d, &sectors, &mut |seen| {
                let Seen::Entry(e) = seen else {
                    return ControlFlow::Continue(());
                };
                if !e.visible {
                    return ControlFlow::Continue(());
                }
                let i = index;
                index += 1;
                if i >= from && !each(i, &e.name, e.kind()) {
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            })
        })
    }

    fn usage(&mut self) -> Usage {
        let bytes = u64::from(self.geo.cluster_bytes());
        let total = u64::from(self.geo.clusters);
        Usage {
            // A FAT that cannot be read counts as empty.
            used: self
                .free_clusters()
                .map_or(0, |f| total.saturating_sub(u64::from(f)) * bytes),
            limit: Some(total * bytes),
            nodes: self.nodes.live(),
        }
    }

    fn write(&mut self, node: NodeId, offset: u64, buf: &[u8]) -> Result<usize, ErrorKind> {
        let p = self.path(node, Some(FileType::File))?;
        let e = self.file(&p)?;
        if buf.is_empty() {
            return Ok(0);
        }
        self.writable()?;
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&end| end <= MAX_FILE_SIZE)
            .ok_or(ErrorKind::InvalidArgument("past FAT's 4 GiB file size"))?;
        let have = self.chain_len(&e)?;
        let new_end = end.max(u64::from(e.size));
        let grow = self.geo.clusters_for(new_end).saturating_sub(have);
        self.reserve(grow)?;
        let r = self.write_through(&p, &e, offset as u32, buf);
        self.free = match (&r, self.free) {
            (Ok(()), Some(f)) => Some(f.saturating_sub(grow)),
            _ => None,
        };
        let flushed = self.finish();
        r.and(flushed).map(|()| buf.len())
    }

    fn set_len(&mut self, node: NodeId, len: u64) -> Result<(), ErrorKind> {
        let p = self.path(node, Some(FileType::File))?;
        let e = self.file(&p)?;
        if len == u64::from(e.size) {
            return Ok(());
        }
        self.writable()?;
        let len = u32::try_from(len)
            .map_err(|_| ErrorKind::InvalidArgument("past FAT's 4 GiB file size"))?;
        let have = self.chain_len(&e)?;
        if len > e.size {
            let grow = self.geo.clusters_for(u64::from(len)).saturating_sub(have);
            self.reserve(grow)?;
            let r = self.write_through(&p, &e, len, &[]);
            self.free = match (&r, self.free) {
                (Ok(()), Some(f)) => Some(f.saturating_sub(grow)),
                _ => None,
            };
            let flushed = self.finish();
            return r.and(flushed);
        }
        // Shorter: embedded-sdmmc truncates only to 0, so by hand. The entry first: a crash
        // after it leaves clusters lost, never a file over freed clusters.
        let keep = self.geo.clusters_for(u64::from(len));
        let g = self.geo;
        let r = self.raw(|d| {
            update_entry(d, &e, |slot| {
                slot[28..32].copy_from_slice(&len.to_le_bytes());
                slot[11] |= ATTR_ARCHIVE;
                if keep == 0 {
                    slot[26..28].fill(0);
                    if g.fat_type == FatType::Fat32 {
                        slot[20..22].fill(0);
                    }
                }
            })?;
            if e.cluster == 0 {
                return Ok(0);
            }
            let mut fat = Fat::new(d);
            if keep == 0 {
                return fat.free_chain(e.cluster);
            }
            let last = fat.nth(e.cluster, keep - 1)?;
            let link = fat.link(last)?;
            fat.set(last, g.end_mark())?;
            let freed = match link {
                Link::Next(n) => fat.free_chain(n)?,
                _ => 0,
            };
            fat.flush()?;
            Ok(freed)
        });
        self.free = match (&r, self.free) {
            (Ok(n), Some(f)) => Some(f.saturating_add(*n)),
            _ => None,
        };
        let flushed = self.finish();
        r.and(flushed).map(drop)
    }

    fn create(&mut self, dir: NodeId, name: &str, new: NewNode<'_>) -> Result<NodeId, ErrorKind> {
        path::check_name(name)?;
        let mut p = self.path(dir, Some(FileType::Dir))?;
        let is_dir = match new {
            NewNode::File { .. } => false,
            NewNode::Dir { .. } => true,
            NewNode::Symlink { .. } => return Err(ErrorKind::Unsupported),
        };
        let (sfn, case) = make_short_name(name)?;
        self.writable()?;
        let g = self.geo;
        let (loc, sectors, has_free) = self.raw(|d| {
            let loc = loc_of(&g, &resolve(d, &p)?)?;
            let sectors = dir_sectors(d, loc)?;
            let (mut exists, mut has_free) = (false, false);
            scan(d, &sectors, &mut |seen| {
                match seen {
                    Seen::Entry(e) if e.matches(name) || e.sfn == sfn => exists = true,
                    Seen::Lfn(b) if *b == sfn => exists = true,
                    Seen::Free => has_free = true,
                    _ => {}
                }
                if exists {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })?;
            if exists {
                return Err(ErrorKind::AlreadyExists);
            }
            Ok((loc, sectors, has_free))
        })?;
        // Without a free slot, embedded-sdmmc adds a cluster to the directory (FAT16's root
        // cannot grow: it says no space).
        let fixed_root = loc == DirLoc::Root && g.fat_type == FatType::Fat16;
        let extend = !has_free && !fixed_root;
        if extend
            && (sectors.len() + g.sectors_per_cluster as usize) * (SECTOR / SLOT) > MAX_DIR_SLOTS
        {
            return Err(ErrorKind::NoSpace);
        }
        let grow = u32::from(extend) + u32::from(is_dir);
        self.reserve(grow)?;
        let names = crate_names(&p)?;
        let new_name = crate_name(&sfn)?;
        let r = self.in_dir(&names, |vm, d| {
            if is_dir {
                vm.make_dir_in_dir(d, new_name)
            } else {
                let f = vm.open_file_in_dir(d, new_name, sd::Mode::ReadWriteCreate)?;
                vm.close_file(f)
            }
        });
        self.free = match (&r, self.free) {
            (Ok(()), Some(f)) => Some(f.saturating_sub(grow)),
            _ => None,
        };
        let cased = match (&r, case) {
            (Ok(()), 0) | (Err(_), _) => Ok(()),
            (Ok(()), _) => self.raw(|d| {
                let sectors = dir_sectors(d, loc)?;
                let e = find_sfn(d, &sectors, &sfn)?.ok_or(ErrorKind::Stale)?;
                update_entry(d, &e, |slot| slot[12] |= case)
            }),
        };
        let flushed = self.finish();
        r?;
        cased?;
        flushed?;
        p.push(sfn);
        let kind = if is_dir {
            FileType::Dir
        } else {
            FileType::File
        };
        self.nodes.acquire(p, kind)
    }

    fn remove(&mut self, dir: NodeId, name: &str, is_dir: bool) -> Result<(), ErrorKind> {
        let mut p = self.path(dir, Some(FileType::Dir))?;
        self.writable()?;
        let g = self.geo;
        let e = self.raw(|d| {
            let loc = loc_of(&g, &resolve(d, &p)?)?;
            let sectors = dir_sectors(d, loc)?;
            let e = find_name(d, &sectors, name)?.ok_or(ErrorKind::NotFound)?;
            match find_sfn(d, &sectors, &e.sfn)? {
                Some(f) if (f.sector, f.offset) == (e.sector, e.offset) => {}
                _ => return Err(bad("two entries with one short name")),
            }
            match (e.is_dir(), is_dir) {
                (true, false) => return Err(ErrorKind::IsADirectory),
                (false, true) => return Err(ErrorKind::NotADirectory),
                (true, true) => {
                    // Its chain checked whole (embedded-sdmmc lists it, and it is freed).
                    let inner = dir_sectors(d, e.dir_loc(&g)?)?;
                    let mut empty = true;
                    scan(d, &inner, &mut |seen| match seen {
                        Seen::Entry(x) if x.visible => {
                            empty = false;
                            ControlFlow::Break(())
                        }
                        _ => ControlFlow::Continue(()),
                    })?;
                    if !empty {
                        return Err(ErrorKind::DirectoryNotEmpty);
                    }
                }
                (false, false) => {
                    e.check_file(&g)?;
                    if e.cluster != 0 {
                        Fat::new(d).chain_len(e.cluster)?;
                    }
                }
            }
            Ok(e)
        })?;
        p.push(e.sfn);
        if self.nodes.is_held(&p) {
            return Err(ErrorKind::Busy);
        }
        let names = crate_names(&p)?;
        let (sfn, parent) = names.split_last().ok_or(ErrorKind::Busy)?;
        self.in_dir(parent, |vm, d| vm.delete_entry_in_dir(d, sfn))?;
        // embedded-sdmmc marked the short entry deleted; its long-name slots and clusters
        // are Rhea's to free.
        let r = self.raw(|d| {
            for &(s, o) in &e.lfn {
                let mut buf = [0u8; SECTOR];
                d.read_sector(s, &mut buf)?;
                if buf[o + 11] & 0x3F == ATTR_LFN {
                    buf[o] = 0xE5;
                    d.write_sector(s, &buf)?;
                }
            }
            if e.cluster == 0 {
                return Ok(0);
            }
            Fat::new(d).free_chain(e.cluster)
        });
        self.free = match (&r, self.free) {
            (Ok(n), Some(f)) => Some(f.saturating_add(*n)),
            _ => None,
        };
        let flushed = self.finish();
        r.and(flushed).map(drop)
    }
}

/// A FAT16 or FAT32 volume on block device `D`, locked by `R` (see the module
/// documentation for what it does and refuses).
pub struct FatFs<R: RawMutex, D: BlockDevice> {
    inner: Mutex<R, Inner<D>>,
    fat_type: FatType,
    cluster_bytes: u32,
}

impl<R: RawMutex, D: BlockDevice> core::fmt::Debug for FatFs<R, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FatFs")
            .field("fat_type", &self.fat_type)
            .field("cluster_bytes", &self.cluster_bytes)
            .finish()
    }
}

impl<R: RawMutex, D: BlockDevice> FatFs<R, D> {
    /// Mounts the FAT volume on `dev`: a bare volume (boot sector at sector 0) or the first
    /// FAT partition of an MBR disk. A damaged or truncated volume is an error
    /// ([`ErrorKind::Io`] naming what is wrong), FAT12, GPT and sectors other than 512
    /// bytes are [`ErrorKind::Unsupported`]. A read-only device mounts read-only.
    pub fn mount(dev: D) -> Result<Self, ErrorKind> {
        let (start, geo) = locate(&dev)?;
        let disk = Disk { dev, start, geo };
        if geo.fat_type == FatType::Fat32 {
            let mut info = [0u8; SECTOR];
            disk.read_sector(geo.fsinfo, &mut info)?;
            if u32_at(&info, 0) != 0x4161_5252
                || u32_at(&info, 484) != 0x6141_7272
                || u32_at(&info, 508) != 0xAA55_0000
            {
                return Err(bad("a FAT32 FSInfo sector without its signatures"));
            }
        }
        let read_only = disk.dev.read_only();
        let vm: Manager<D> = sd::VolumeManager::new_with_limits(disk, DosEpoch, 1);
        let volume = vm.open_raw_volume(sd::VolumeIdx(0)).map_err(sd_error)?;
        Ok(FatFs {
            inner: Mutex::new(Inner {
                vm,
                volume,
                geo,
                nodes: Nodes::new(),
                free: None,
                fsinfo_cleared: false,
                read_only,
            }),
            fat_type: geo.fat_type,
            cluster_bytes: geo.cluster_bytes(),
        })
    }

    /// FAT16 or FAT32.
    pub fn fat_type(&self) -> FatType {
        self.fat_type
    }

    /// Bytes of a cluster (the unit of allocation).
    pub fn cluster_bytes(&self) -> u32 {
        self.cluster_bytes
    }

    /// Unmounts: the device back (every change is on it already).
    pub fn into_device(self) -> D {
        let (disk, _) = self.inner.into_inner().vm.free();
        disk.dev
    }
}

impl<R: RawMutex + Send + Sync, D: BlockDevice> FileSystem for FatFs<R, D> {
    fn kind(&self) -> &'static str {
        "fat"
    }

    fn root(&self) -> NodeId {
        0
    }

    fn lookup(&self, dir: NodeId, name: &str) -> Result<NodeId, ErrorKind> {
        self.inner.lock().lookup(dir, name)
    }

    fn release(&self, node: NodeId) {
        self.inner.lock().nodes.release(node);
    }

    fn metadata(&self, node: NodeId) -> Result<Metadata, ErrorKind> {
        self.inner.lock().metadata(node)
    }

    fn read(&self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        self.inner.lock().read(node, offset, buf)
    }

    fn read_link(&self, node: NodeId) -> Result<String, ErrorKind> {
        self.inner.lock().nodes.get(node)?;
        Err(ErrorKind::InvalidArgument("not a symbolic link"))
    }

    fn read_dir(
        &self,
        dir: NodeId,
        from: usize,
        each: &mut dyn FnMut(usize, &str, FileType) -> bool,
    ) -> Result<(), ErrorKind> {
        self.inner.lock().read_dir(dir, from, each)
    }

    fn usage(&self) -> Usage {
        self.inner.lock().usage()
    }

    fn write(&self, node: NodeId, offset: u64, buf: &[u8]) -> Result<usize, ErrorKind> {
        self.inner.lock().write(node, offset, buf)
    }

    fn set_len(&self, node: NodeId, len: u64) -> Result<(), ErrorKind> {
        self.inner.lock().set_len(node, len)
    }

    fn create(&self, dir: NodeId, name: &str, new: NewNode<'_>) -> Result<NodeId, ErrorKind> {
        self.inner.lock().create(dir, name, new)
    }

    fn remove(&self, dir: NodeId, name: &str, is_dir: bool) -> Result<(), ErrorKind> {
        self.inner.lock().remove(dir, name, is_dir)
    }

    /// Not supported: embedded-sdmmc cannot rename ([`ErrorKind::Unsupported`]).
    fn rename(
        &self,
        from_dir: NodeId,
        _from: &str,
        to_dir: NodeId,
        _to: &str,
    ) -> Result<(), ErrorKind> {
        let s = self.inner.lock();
        s.nodes.get(from_dir)?;
        s.nodes.get(to_dir)?;
        Err(ErrorKind::Unsupported)
    }
}
