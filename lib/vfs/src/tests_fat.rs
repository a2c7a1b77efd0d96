//! FAT through [`FatFs`] against images made and read back by the `fatfs` crate: FAT16 and
//! FAT32, bare and MBR-partitioned; byte-for-byte reads of a large file, many small ones and
//! a deep tree; writes, extension, truncation, creation and removal read back by `fatfs`,
//! with every cluster accounted for (no leak, no cross-link); a full disk; damaged images
//! (boot sector, looping and out-of-range chains, truncated disks, seeded corruption) giving
//! errors, never a panic or a hang; and the whole through [`Vfs`].

use crate::block::{BlockDevice, MemDisk, SECTOR};
use crate::fat::{FatFs, FatType};
use crate::node::{ErrorKind as K, FileSystem, FileType, NewNode, NodeId};
use crate::*;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Cursor, Read, Write};

type Raw = spin::mutex::SpinMutex<()>;
type Disk = Arc<MemDisk<Raw>>;
type Fs = FatFs<Raw, Disk>;
type Tree = BTreeMap<String, Option<Vec<u8>>>;

// ---- images ----

/// Pseudo-random bytes (xorshift), the same for a seed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn format(kind: fatfs::FatType, sectors: u32, cluster: u32) -> Vec<u8> {
    let mut img = vec![0u8; sectors as usize * SECTOR];
    fatfs::format_volume(
        Cursor::new(&mut img),
        fatfs::FormatVolumeOptions::new()
            .fat_type(kind)
            .bytes_per_cluster(cluster)
            .total_sectors(sectors),
    )
    .expect("fatfs formats");
    img
}

/// Runs `f` on `img` mounted by `fatfs`.
fn with_fatfs<X>(
    img: &mut Vec<u8>,
    f: impl FnOnce(&fatfs::FileSystem<Cursor<&mut Vec<u8>>>) -> X,
) -> X {
    let fs =
        fatfs::FileSystem::new(Cursor::new(img), fatfs::FsOptions::new()).expect("fatfs mounts");
    let x = f(&fs);
    fs.unmount().expect("fatfs unmounts");
    x
}

fn put(fs: &fatfs::FileSystem<Cursor<&mut Vec<u8>>>, path: &str, data: &[u8]) {
    let mut f = fs.root_dir().create_file(path).expect("fatfs creates");
    f.truncate().expect("fatfs truncates");
    f.write_all(data).expect("fatfs writes");
}

/// What [`fill`] puts on a volume.
fn sample_tree() -> Tree {
    let mut t = Tree::new();
    t.insert("BIG.BIN".into(), Some(noise(7, (3 << 19) + 123)));
    t.insert("EMPTY.TXT".into(), Some(Vec::new()));
    t.insert("EMPTYDIR".into(), None);
    t.insert("SMALL".into(), None);
    for i in 0..300 {
        t.insert(
            format!("SMALL/F{i:03}.TXT"),
            Some(format!("file {i}\n").repeat(i % 7).into_bytes()),
        );
    }
    let mut at = String::new();
    for d in 0..12 {
        if !at.is_empty() {
            at.push('/');
        }
        at.push_str(&format!("D{d}"));
        t.insert(at.clone(), None);
        t.insert(
            format!("{at}/LEAF{d}.DAT"),
            Some(noise(d as u64 + 100, 700 * d)),
        );
    }
    t
}

/// Writes `tree` with `fatfs`.
fn fill(img: &mut Vec<u8>, tree: &Tree) {
    with_fatfs(img, |fs| {
        for (path, data) in tree {
            match data {
                None => {
                    fs.root_dir()
                        .create_dir(path)
                        .expect("fatfs makes a directory");
                }
                Some(d) => put(fs, path, d),
            }
        }
    });
}

/// Everything `fatfs` sees (names upper-cased: it shows short names as stored).
fn fatfs_tree(img: &mut Vec<u8>) -> Tree {
    fn walk(dir: fatfs::Dir<'_, Cursor<&mut Vec<u8>>>, at: &str, out: &mut Tree) {
        for e in dir.iter() {
            let e = e.expect("fatfs lists");
            let name = String::from_utf8(e.short_file_name_as_bytes().to_vec()).unwrap();
            if name == "." || name == ".." {
                continue;
            }
            let path = if at.is_empty() {
                name
            } else {
                format!("{at}/{name}")
            };
            if e.is_dir() {
                out.insert(path.clone(), None);
                walk(e.to_dir(), &path, out);
            } else {
                let mut data = Vec::new();
                e.to_file().read_to_end(&mut data).expect("fatfs reads");
                out.insert(path, Some(data));
            }
        }
    }
    with_fatfs(img, |fs| {
        let mut t = Tree::new();
        walk(fs.root_dir(), "", &mut t);
        t
    })
}

fn mount(img: Vec<u8>) -> (Fs, Disk) {
    let disk = Arc::new(MemDisk::from_bytes(img));
    (Fs::mount(disk.clone()).expect("mounts"), disk)
}

fn mount_err(img: Vec<u8>) -> K {
    Fs::mount(Arc::new(MemDisk::from_bytes(img))).expect_err("must not mount")
}

// ---- walking through the contract ----

fn list(fs: &dyn FileSystem, dir: NodeId) -> Result<Vec<(String, FileType)>, K> {
    let mut out = Vec::new();
    fs.read_dir(dir, 0, &mut |_, name, kind| {
        out.push((String::from(name), kind));
        true
    })?;
    Ok(out)
}

fn read_all(fs: &dyn FileSystem, node: NodeId) -> Result<Vec<u8>, K> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 100_000];
    loop {
        let n = fs.read(node, out.len() as u64, &mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// The node at `path` (`/`-separated, from the root).
fn node(fs: &dyn FileSystem, path: &str) -> Result<NodeId, K> {
    let mut cur = fs.root();
    for c in path.split('/').filter(|c| !c.is_empty()) {
        let next = fs.lookup(cur, c);
        if cur != fs.root() {
            fs.release(cur);
        }
        cur = next?;
    }
    Ok(cur)
}

/// Everything `fs` holds, every listing checked against lookups and metadata.
fn tree(fs: &dyn FileSystem) -> Tree {
    fn walk(fs: &dyn FileSystem, dir: NodeId, at: &str, out: &mut Tree) {
        for (index, (name, kind)) in list(fs, dir).expect("lists").into_iter().enumerate() {
            // Listing from an index gives the same entry.
            let mut again = None;
            fs.read_dir(dir, index, &mut |i, n, _| {
                again = Some((i, String::from(n)));
                false
            })
            .unwrap();
            assert_eq!(again, Some((index, name.clone())));
            let n = fs.lookup(dir, &name).expect("a listed name is found");
            let meta = fs.metadata(n).expect("metadata");
            assert_eq!(meta.kind, kind, "{at}/{name}");
            let path = if at.is_empty() {
                name
            } else {
                format!("{at}/{name}")
            };
            match kind {
                FileType::Dir => {
                    out.insert(path.to_uppercase(), None);
                    walk(fs, n, &path, out);
                }
                _ => {
                    let data = read_all(fs, n).expect("reads");
                    assert_eq!(meta.len, data.len() as u64, "{path}");
                    out.insert(path.to_uppercase(), Some(data));
                }
            }
            fs.release(n);
        }
    }
    let mut t = Tree::new();
    walk(fs, fs.root(), "", &mut t);
    t
}

// ---- a second, independent reading of the on-disk structures ----

/// A volume's layout, read by the tests themselves.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// Byte offset of the volume in the image.
    base: usize,
    fat16: bool,
    spc: usize,
    reserved: usize,
    fats: usize,
    fat_sectors: usize,
    root_start: usize,
    root_sectors: usize,
    first_data: usize,
    clusters: u32,
    root_cluster: u32,
}

fn le16(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]) as usize
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn layout_at(img: &[u8], base: usize) -> Layout {
    let b = &img[base..];
    let spc = b[13] as usize;
    let reserved = le16(b, 14);
    let fats = b[16] as usize;
    let root_entries = le16(b, 17);
    let total = match le16(b, 19) {
        0 => le32(b, 32) as usize,
        n => n,
    };
    let fat_sectors = match le16(b, 22) {
        0 => le32(b, 36) as usize,
        n => n,
    };
    let root_start = reserved + fats * fat_sectors;
    let root_sectors = (root_entries * 32).div_ceil(SECTOR);
    let first_data = root_start + root_sectors;
    let clusters = ((total - first_data) / spc) as u32;
    Layout {
        base,
        fat16: clusters < 65525,
        spc,
        reserved,
        fats,
        fat_sectors,
        root_start,
        root_sectors,
        first_data,
        clusters,
        root_cluster: if clusters < 65525 { 0 } else { le32(b, 44) },
    }
}

fn layout(img: &[u8]) -> Layout {
    layout_at(img, 0)
}

impl Layout {
    fn fat_at(&self, c: u32, copy: usize) -> usize {
        let bytes = if self.fat16 { 2 } else { 4 };
        self.base + (self.reserved + copy * self.fat_sectors) * SECTOR + c as usize * bytes
    }

    fn get(&self, img: &[u8], c: u32) -> u32 {
        let at = self.fat_at(c, 0);
        if self.fat16 {
            le16(img, at) as u32
        } else {
            le32(img, at) & 0x0FFF_FFFF
        }
    }

    /// Sets an entry in every FAT copy.
    fn set(&self, img: &mut [u8], c: u32, v: u32) {
        for copy in 0..self.fats {
            let at = self.fat_at(c, copy);
            if self.fat16 {
                img[at..at + 2].copy_from_slice(&(v as u16).to_le_bytes());
            } else {
                img[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
    }

    fn is_end(&self, v: u32) -> bool {
        v >= if self.fat16 { 0xFFF8 } else { 0x0FFF_FFF8 }
    }

    fn cluster_bytes(&self) -> usize {
        self.spc * SECTOR
    }

    /// The chain from `first` (panics on a loop: a test image must not have one here).
    fn chain(&self, img: &[u8], first: u32) -> Vec<u32> {
        let mut out = vec![first];
        let mut c = first;
        loop {
            let v = self.get(img, c);
            if self.is_end(v) {
                return out;
            }
            assert!(
                (2..=self.clusters + 1).contains(&v),
                "chain of {first} runs to {v:#x}"
            );
            assert!(
                out.len() <= self.clusters as usize,
                "chain of {first} loops"
            );
            out.push(v);
            c = v;
        }
    }

    /// Byte offsets of a directory's slots (`None`: the root).
    fn dir_slots(&self, img: &[u8], dir: Option<u32>) -> Vec<usize> {
        let sectors: Vec<usize> = match (dir, self.fat16) {
            (None, true) => (self.root_start..self.root_start + self.root_sectors).collect(),
            (None, false) => self.cluster_sectors(img, self.root_cluster),
            (Some(c), _) => self.cluster_sectors(img, c),
        };
        sectors
            .iter()
            .flat_map(|s| (0..SECTOR / 32).map(move |i| self.base + s * SECTOR + i * 32))
            .collect()
    }

    fn cluster_sectors(&self, img: &[u8], first: u32) -> Vec<usize> {
        self.chain(img, first)
            .iter()
            .flat_map(|&c| {
                let s = self.first_data + (c as usize - 2) * self.spc;
                s..s + self.spc
            })
            .collect()
    }

    /// The short entries of a directory: (slot offset, name, attributes, cluster, size).
    fn entries(&self, img: &[u8], dir: Option<u32>) -> Vec<(usize, [u8; 11], u8, u32, u32)> {
        let mut out = Vec::new();
        for at in self.dir_slots(img, dir) {
            let s = &img[at..at + 32];
            match s[0] {
                0 => break,
                0xE5 => continue,
                _ => {}
            }
            if s[11] & 0x3F == 0x0F || s[11] & 0x08 != 0 || s[0] == b'.' {
                continue;
            }
            let mut name = [0u8; 11];
            name.copy_from_slice(&s[..11]);
            let hi = if self.fat16 {
                0
            } else {
                (le16(s, 20) as u32) << 16
            };
            out.push((at, name, s[11], hi | le16(s, 26) as u32, le32(s, 28)));
        }
        out
    }

    /// The entry at `path` (short names as `NAME.EXT`).
    fn find(&self, img: &[u8], path: &str) -> (usize, [u8; 11], u8, u32, u32) {
        let mut dir = None;
        let mut found = None;
        for c in path.split('/') {
            let want = sfn(c);
            let e = self
                .entries(img, dir)
                .into_iter()
                .find(|e| e.1 == want)
                .unwrap_or_else(|| panic!("{path}: no {c}"));
            dir = Some(e.3);
            found = Some(e);
        }
        found.expect("a path")
    }

    /// Checks that every allocated cluster belongs to exactly one file or directory, and
    /// every file's chain fits its size: no leak, no cross-link.
    fn check(&self, img: &[u8]) {
        let mut used = BTreeSet::new();
        let mut take = |chain: Vec<u32>, what: &str| {
            for c in chain {
                assert!(used.insert(c), "cluster {c} twice ({what})");
            }
        };
        if !self.fat16 {
            take(self.chain(img, self.root_cluster), "root");
        }
        let mut todo = vec![None];
        while let Some(dir) = todo.pop() {
            for (_, name, attr, cluster, size) in self.entries(img, dir) {
                let what = String::from_utf8_lossy(&name).into_owned();
                if attr & 0x10 != 0 {
                    assert!(cluster >= 2, "{what}: a directory without a cluster");
                    take(self.chain(img, cluster), &what);
                    todo.push(Some(cluster));
                } else if cluster == 0 {
                    assert_eq!(size, 0, "{what}: data without a cluster");
                } else {
                    let chain = self.chain(img, cluster);
                    assert_eq!(
                        chain.len(),
                        (size as usize).div_ceil(self.cluster_bytes()).max(1),
                        "{what}: chain length against size {size}"
                    );
                    take(chain, &what);
                }
            }
        }
        for c in 2..=self.clusters + 1 {
            if self.get(img, c) != 0 {
                assert!(used.contains(&c), "cluster {c} allocated but lost");
            }
        }
    }

    fn free(&self, img: &[u8]) -> u32 {
        (2..=self.clusters + 1)
            .filter(|&c| self.get(img, c) == 0)
            .count() as u32
    }
}

/// `NAME.EXT` as stored.
fn sfn(name: &str) -> [u8; 11] {
    let (b, e) = name.split_once('.').unwrap_or((name, ""));
    let mut out = [b' '; 11];
    out[..b.len()].copy_from_slice(b.as_bytes());
    out[8..8 + e.len()].copy_from_slice(e.as_bytes());
    out
}

/// The long-name slots of `name` for short name `short`, in disk order.
fn lfn_slots(name: &str, short: &[u8; 11], checksum_delta: u8) -> Vec<[u8; 32]> {
    let sum = short
        .iter()
        .fold(0u8, |s, &b| s.rotate_right(1).wrapping_add(b))
        .wrapping_add(checksum_delta);
    let mut units: Vec<u16> = name.encode_utf16().collect();
    if !units.len().is_multiple_of(13) {
        units.push(0);
    }
    while !units.len().is_multiple_of(13) {
        units.push(0xFFFF);
    }
    let n = units.len() / 13;
    let mut out = Vec::new();
    for seq in (1..=n).rev() {
        let mut s = [0u8; 32];
        s[0] = seq as u8 | if seq == n { 0x40 } else { 0 };
        s[11] = 0x0F;
        s[13] = sum;
        for (k, &o) in [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30]
            .iter()
            .enumerate()
        {
            s[o..o + 2].copy_from_slice(&units[(seq - 1) * 13 + k].to_le_bytes());
        }
        out.push(s);
    }
    out
}

/// Gives root entry `short` the long name `name`, in the deleted slots before it.
fn add_long_name(img: &mut [u8], short: &str, name: &str, checksum_delta: u8) {
    let l = layout(img);
    let (at, stored, ..) = l.find(img, short);
    let slots = lfn_slots(name, &stored, checksum_delta);
    let first = at - 32 * slots.len();
    for (i, s) in slots.iter().enumerate() {
        let p = first + 32 * i;
        assert_eq!(img[p], 0xE5, "a free slot before {short}");
        img[p..p + 32].copy_from_slice(s);
    }
}

// ---- reading ----

fn fat16_image() -> Vec<u8> {
    let mut img = format(fatfs::FatType::Fat16, 32768, 2048);
    fill(&mut img, &sample_tree());
    img
}

fn fat32_image() -> Vec<u8> {
    let mut img = format(fatfs::FatType::Fat32, 81920, 512);
    fill(&mut img, &sample_tree());
    img
}

fn reads_match(img: Vec<u8>, kind: FatType) {
    let (fs, _) = mount(img);
    assert_eq!(fs.fat_type(), kind);
    assert_eq!(fs.kind(), "fat");
    assert_eq!(tree(&fs), sample_tree());
    // Pieces at odd offsets and lengths, and past the end.
    let big = node(&fs, "BIG.BIN").unwrap();
    let want = sample_tree()["BIG.BIN"].clone().unwrap();
    for (at, len) in [
        (0, 1),
        (511, 2),
        (2047, 4099),
        (700_001, 65_537),
        (want.len() - 5, 100),
    ] {
        let mut buf = vec![0u8; len];
        let n = fs.read(big, at as u64, &mut buf).unwrap();
        assert_eq!(&buf[..n], &want[at..(at + len).min(want.len())], "at {at}");
    }
    for at in [want.len() as u64, want.len() as u64 + 1, u64::MAX] {
        assert_eq!(fs.read(big, at, &mut [0u8; 8]), Ok(0));
    }
    let meta = fs.metadata(big).unwrap();
    assert!(meta.is_file() && meta.len == want.len() as u64 && meta.perm == 0o644);
    // fatfs without its `chrono` feature writes date 0: no valid date.
    assert_eq!(meta.modified, None);
    fs.release(big);
    let small = node(&fs, "SMALL").unwrap();
    assert_eq!(fs.metadata(small).unwrap().len, 300);
    assert_eq!(fs.metadata(fs.root()).unwrap().kind, FileType::Dir);
    fs.release(small);
    // Names are found whatever their case.
    let n = node(&fs, "small/f042.txt").unwrap();
    assert_eq!(
        read_all(&fs, n).unwrap(),
        sample_tree()["SMALL/F042.TXT"].clone().unwrap()
    );
    fs.release(n);
    assert_eq!(node(&fs, "NOPE"), Err(K::NotFound));
    assert_eq!(node(&fs, "BIG.BIN/X"), Err(K::NotADirectory));
}

#[test]
fn fat16_reads_match_what_fatfs_wrote() {
    reads_match(fat16_image(), FatType::Fat16);
}

#[test]
fn fat32_reads_match_what_fatfs_wrote() {
    reads_match(fat32_image(), FatType::Fat32);
}

#[test]
fn an_mbr_disk_mounts_its_first_fat_partition() {
    let mut vol = format(fatfs::FatType::Fat16, 8192, 512);
    let tree_in: Tree = [("HELLO.TXT".to_string(), Some(b"from a partition".to_vec()))].into();
    fill(&mut vol, &tree_in);
    let start = 2048usize;
    let mut img = vec![0u8; start * SECTOR];
    // Entry 0: a Linux partition (skipped); entry 1: the FAT16 one.
    let entry = |img: &mut Vec<u8>, i: usize, kind: u8, lba: usize, len: usize| {
        let e = 446 + 16 * i;
        img[e] = 0x80 * (i == 1) as u8;
        img[e + 4] = kind;
        img[e + 8..e + 12].copy_from_slice(&(lba as u32).to_le_bytes());
        img[e + 12..e + 16].copy_from_slice(&(len as u32).to_le_bytes());
    };
    entry(&mut img, 0, 0x83, 1, 100);
    entry(&mut img, 1, 0x06, start, vol.len() / SECTOR);
    img[510] = 0x55;
    img[511] = 0xAA;
    img.extend_from_slice(&vol);
    img.extend_from_slice(&[0u8; 4096]);
    let (fs, disk) = mount(img.clone());
    assert_eq!(tree(&fs), tree_in);
    // Writes land in the partition, nowhere else.
    let n = fs
        .create(fs.root(), "new.txt", NewNode::File { perm: 0o644 })
        .unwrap();
    fs.write(n, 0, b"written").unwrap();
    fs.release(n);
    let after = disk.to_bytes();
    assert_eq!(after[..start * SECTOR], img[..start * SECTOR]);
    assert_eq!(after[after.len() - 4096..], [0u8; 4096]);
    let mut part = after[start * SECTOR..after.len() - 4096].to_vec();
    layout(&part).check(&part);
    assert_eq!(fatfs_tree(&mut part)["NEW.TXT"], Some(b"written".to_vec()));
    // A partition past the end of the disk, or a partition table without FAT: errors.
    let mut short = img.clone();
    short.truncate(start * SECTOR + 4096);
    assert!(matches!(mount_err(short), K::Io(_)));
    let mut none = img.clone();
    none[446 + 16 + 4] = 0x83;
    assert!(matches!(mount_err(none), K::Io(_)));
    let mut gpt = img;
    gpt[446 + 4] = 0xEE;
    gpt[446 + 16 + 4] = 0;
    assert_eq!(mount_err(gpt), K::Unsupported);
}

#[test]
fn long_names_are_read_and_a_bad_checksum_falls_back_to_the_short_name() {
    let mut img = format(fatfs::FatType::Fat16, 8192, 512);
    with_fatfs(&mut img, |fs| {
        for n in [
            "X1",
            "X2",
            "X3",
            "LONGNA~1.TXT",
            "Y1",
            "Y2",
            "Y3",
            "BADSUM~1.TXT",
        ] {
            put(
                fs,
                n,
                if n.starts_with("LONG") {
                    b"long"
                } else {
                    b"bad"
                },
            );
        }
        for n in ["X1", "X2", "X3", "Y1", "Y2", "Y3"] {
            fs.root_dir().remove(n).unwrap();
        }
    });
    add_long_name(&mut img, "LONGNA~1.TXT", "A long name, ünïcode.txt", 0);
    add_long_name(&mut img, "BADSUM~1.TXT", "Bad checksum.txt", 1);
    let (fs, disk) = mount(img);
    let names: Vec<String> = list(&fs, fs.root())
        .unwrap()
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(names, ["A long name, ünïcode.txt", "BADSUM~1.TXT"]);
    for name in [
        "A long name, ünïcode.txt",
        "a LONG name, ünïcode.TXT",
        "longna~1.txt",
    ] {
        let n = fs.lookup(fs.root(), name).unwrap();
        assert_eq!(read_all(&fs, n).unwrap(), b"long");
        fs.release(n);
    }
    // Writing through embedded-sdmmc keeps the long name (its checksum is of the short one).
    let n = fs.lookup(fs.root(), "A long name, ünïcode.txt").unwrap();
    fs.write(n, 4, b" and longer").unwrap();
    fs.release(n);
    assert_eq!(
        list(&fs, fs.root()).unwrap()[0].0,
        "A long name, ünïcode.txt"
    );
    // Removing it frees its long-name slots too.
    let before = disk.to_bytes();
    let (at, ..) = layout(&before).find(&before, "LONGNA~1.TXT");
    fs.remove(fs.root(), "A long name, ünïcode.txt", false)
        .unwrap();
    let img = disk.to_bytes();
    assert_eq!([img[at - 64], img[at - 32], img[at]], [0xE5; 3]);
    layout(&img).check(&img);
    assert_eq!(list(&fs, fs.root()).unwrap().len(), 1);
}

// ---- writing ----

fn writes_read_back(img: Vec<u8>) {
    let mut model = sample_tree();
    let (fs, disk) = mount(img);
    let root = fs.root();
    // A new file, written in odd pieces, then overwritten in the middle.
    let data = noise(42, 300_001);
    let f = fs
        .create(root, "new.txt", NewNode::File { perm: 0o644 })
        .unwrap();
    let mut at = 0;
    for piece in data.chunks(4093) {
        assert_eq!(fs.write(f, at, piece), Ok(piece.len()));
        at += piece.len() as u64;
    }
    fs.write(f, 1000, b"OVERWRITE").unwrap();
    let mut want = data.clone();
    want[1000..1009].copy_from_slice(b"OVERWRITE");
    // Past the end: the gap reads as zeros.
    fs.write(f, 310_000, b"tail").unwrap();
    want.resize(310_000, 0);
    want.extend_from_slice(b"tail");
    assert_eq!(read_all(&fs, f).unwrap(), want);
    // Written with embedded-sdmmc's clock: the DOS epoch, 1980-01-01.
    assert_eq!(fs.metadata(f).unwrap().modified, Some(315_532_800));
    fs.release(f);
    model.insert("NEW.TXT".into(), Some(want));
    // A directory, a file in it, appended to.
    let d = fs
        .create(root, "LOGS", NewNode::Dir { perm: 0o755 })
        .unwrap();
    let log = fs
        .create(d, "a.log", NewNode::File { perm: 0o644 })
        .unwrap();
    let mut text = Vec::new();
    for i in 0..50 {
        let line = format!("line {i}\n");
        fs.write(log, text.len() as u64, line.as_bytes()).unwrap();
        text.extend_from_slice(line.as_bytes());
    }
    fs.release(log);
    fs.release(d);
    model.insert("LOGS".into(), None);
    model.insert("LOGS/A.LOG".into(), Some(text));
    // Truncate, extend with zeros, truncate to nothing.
    let big = node(&fs, "BIG.BIN").unwrap();
    fs.set_len(big, 10_000).unwrap();
    fs.set_len(big, 10_500).unwrap();
    fs.release(big);
    let mut b = model["BIG.BIN"].clone().unwrap();
    b.truncate(10_000);
    b.resize(10_500, 0);
    model.insert("BIG.BIN".into(), Some(b));
    let leaf = node(&fs, "D0/D1/LEAF1.DAT").unwrap();
    fs.set_len(leaf, 0).unwrap();
    fs.write(leaf, 0, b"again").unwrap();
    fs.release(leaf);
    model.insert("D0/D1/LEAF1.DAT".into(), Some(b"again".to_vec()));
    // Remove files and an empty directory.
    let small = node(&fs, "SMALL").unwrap();
    for i in (0..300).step_by(3) {
        fs.remove(small, &format!("F{i:03}.TXT"), false).unwrap();
        model.remove(&format!("SMALL/F{i:03}.TXT"));
    }
    fs.release(small);
    fs.remove(root, "EMPTYDIR", true).unwrap();
    model.remove("EMPTYDIR");
    // FatFs sees it so, and so does fatfs; every cluster accounted for.
    assert_eq!(tree(&fs), model);
    let mut img = disk.to_bytes();
    let l = layout(&img);
    l.check(&img);
    let used = fs.usage().used;
    assert_eq!(
        used,
        u64::from(l.clusters - l.free(&img)) * l.cluster_bytes() as u64
    );
    assert_eq!(fatfs_tree(&mut img), model);
    // The lower-case name was kept with the case bits (fatfs shows the stored name).
    assert!(list(&fs, root).unwrap().iter().any(|e| e.0 == "new.txt"));
    assert!(list(&fs, root).unwrap().iter().any(|e| e.0 == "LOGS"));
}

#[test]
fn fat16_writes_read_back_by_fatfs() {
    writes_read_back(fat16_image());
}

#[test]
fn fat32_writes_read_back_by_fatfs() {
    writes_read_back(fat32_image());
}

#[test]
fn a_tree_made_from_empty_reads_back_by_fatfs() {
    // The reverse direction from an empty volume: everything made through FatFs.
    let (fs, disk) = mount(format(fatfs::FatType::Fat32, 81920, 512));
    let mut model = Tree::new();
    let mut dir = fs.root();
    let mut at = String::new();
    for d in 0..10 {
        let name = format!("DIR{d}");
        let next = fs.create(dir, &name, NewNode::Dir { perm: 0o755 }).unwrap();
        if dir != fs.root() {
            fs.release(dir);
        }
        dir = next;
        at = if at.is_empty() {
            name
        } else {
            format!("{at}/{name}")
        };
        model.insert(at.clone(), None);
        for f in 0..20 {
            let n = fs
                .create(dir, &format!("F{f}.BIN"), NewNode::File { perm: 0o644 })
                .unwrap();
            let data = noise((d * 100 + f) as u64, f * 333);
            fs.write(n, 0, &data).unwrap();
            fs.release(n);
            model.insert(format!("{at}/F{f}.BIN"), Some(data));
        }
    }
    fs.release(dir);
    let mut img = disk.to_bytes();
    layout(&img).check(&img);
    assert_eq!(fatfs_tree(&mut img), model);
    assert_eq!(tree(&fs), model);
}

#[test]
fn a_full_disk_is_no_space_and_nothing_else_is_damaged() {
    // fatfs marks the FAT entries past the last cluster; other formatters leave them 0,
    // where embedded-sdmmc's allocator would find them free.
    full_disk(false);
    full_disk(true);
}

/// The FAT bytes past the last cluster's entry, in every copy.
fn past_end(img: &[u8]) -> Vec<u8> {
    let l = layout(img);
    (0..l.fats)
        .flat_map(|copy| {
            let from = l.fat_at(l.clusters + 2, copy);
            let to = l.base + (l.reserved + (copy + 1) * l.fat_sectors) * SECTOR;
            img[from..to].to_vec()
        })
        .collect()
}

fn full_disk(zero_past_end: bool) {
    let mut img = format(fatfs::FatType::Fat16, 4200, 512);
    if zero_past_end {
        let l = layout(&img);
        for copy in 0..l.fats {
            let from = l.fat_at(l.clusters + 2, copy);
            img[from..(l.reserved + (copy + 1) * l.fat_sectors) * SECTOR].fill(0);
        }
    }
    let padding = past_end(&img);
    assert!(padding.len() > 100);
    let keep: Tree = [
        ("KEEP.BIN".to_string(), Some(noise(1, 20_000))),
        ("DIR".to_string(), None),
        ("DIR/ALSO.TXT".to_string(), Some(b"kept".to_vec())),
    ]
    .into();
    fill(&mut img, &keep);
    let (fs, disk) = mount(img);
    let fill = fs
        .create(fs.root(), "FILL.BIN", NewNode::File { perm: 0o644 })
        .unwrap();
    let chunk = noise(9, 64 * 1024);
    let mut written = Vec::new();
    let err = loop {
        match fs.write(fill, written.len() as u64, &chunk) {
            Ok(n) => written.extend_from_slice(&chunk[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(err, K::NoSpace);
    // Smaller pieces fill it to its last cluster but one.
    let err = loop {
        match fs.write(fill, written.len() as u64, &chunk[..512]) {
            Ok(n) => written.extend_from_slice(&chunk[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(err, K::NoSpace);
    assert_eq!(fs.usage().limit.unwrap() - fs.usage().used, 512);
    // Nothing grows: a directory, a file past its end, a directory that needs a cluster.
    assert_eq!(
        fs.create(fs.root(), "NEWDIR", NewNode::Dir { perm: 0o755 }),
        Err(K::NoSpace)
    );
    let also = node(&fs, "DIR/ALSO.TXT").unwrap();
    assert_eq!(fs.set_len(also, 5000), Err(K::NoSpace));
    // But what fits in a cluster it has does.
    fs.write(also, 4, b" too").unwrap();
    fs.release(also);
    let mut want = keep.clone();
    want.insert("DIR/ALSO.TXT".into(), Some(b"kept too".to_vec()));
    want.insert("FILL.BIN".into(), Some(written.clone()));
    let mut img = disk.to_bytes();
    let l = layout(&img);
    l.check(&img);
    assert_eq!(l.free(&img), 1);
    assert_eq!(
        past_end(&img),
        padding,
        "nothing allocated past the last cluster"
    );
    assert_eq!(fatfs_tree(&mut img), want);
    // Removing the filler gives the space back.
    fs.release(fill);
    fs.remove(fs.root(), "FILL.BIN", false).unwrap();
    let d = fs
        .create(fs.root(), "NEWDIR", NewNode::Dir { perm: 0o755 })
        .unwrap();
    fs.release(d);
    let img = disk.to_bytes();
    layout(&img).check(&img);
}

#[test]
fn a_stale_fsinfo_hint_does_not_allocate_past_the_end() {
    // FAT32: free clusters only at the start, the tail used up to the last cluster, the
    // FSInfo "next free" hint (advisory) at the last cluster, the FAT entries past it 0.
    // embedded-sdmmc searches from the hint and would take an entry past the end.
    let mut img = format(fatfs::FatType::Fat32, 81920, 512);
    with_fatfs(&mut img, |fs| {
        put(fs, "A.BIN", &[1; 5120]);
        let free = fs.stats().unwrap().free_clusters() as usize;
        put(fs, "FILL.BIN", &vec![2u8; free * 512]);
        fs.root_dir().remove("A.BIN").unwrap();
    });
    let l = layout(&img);
    assert_ne!(l.get(&img, l.clusters + 1), 0, "the last cluster is used");
    let info = le16(&img, 48) * SECTOR;
    img[info + 492..info + 496].copy_from_slice(&(l.clusters + 1).to_le_bytes());
    for copy in 0..l.fats {
        let from = l.fat_at(l.clusters + 2, copy);
        img[from..(l.reserved + (copy + 1) * l.fat_sectors) * SECTOR].fill(0);
    }
    let padding = past_end(&img);
    let (fs, disk) = mount(img);
    let n = fs
        .create(fs.root(), "NEW.BIN", NewNode::File { perm: 0o644 })
        .unwrap();
    fs.write(n, 0, &[3; 3000]).unwrap();
    assert_eq!(read_all(&fs, n).unwrap(), [3; 3000]);
    fs.release(n);
    let img = disk.to_bytes();
    assert_eq!(
        past_end(&img),
        padding,
        "nothing allocated past the last cluster"
    );
    layout(&img).check(&img);
}

#[test]
fn a_full_fat16_root_is_no_space() {
    let (fs, disk) = mount(format(fatfs::FatType::Fat16, 4200, 512));
    for i in 0..512 {
        let n = fs
            .create(fs.root(), &format!("F{i}"), NewNode::File { perm: 0o644 })
            .unwrap();
        fs.release(n);
    }
    assert_eq!(
        fs.create(fs.root(), "ONEMORE", NewNode::File { perm: 0o644 }),
        Err(K::NoSpace)
    );
    assert_eq!(list(&fs, fs.root()).unwrap().len(), 512);
    let img = disk.to_bytes();
    layout(&img).check(&img);
}

#[test]
fn a_directory_grows_past_one_cluster() {
    let (fs, disk) = mount(format(fatfs::FatType::Fat16, 8192, 512));
    let d = fs
        .create(fs.root(), "MANY", NewNode::Dir { perm: 0o755 })
        .unwrap();
    for i in 0..100 {
        let n = fs
            .create(d, &format!("N{i}.TXT"), NewNode::File { perm: 0o644 })
            .unwrap();
        fs.write(n, 0, format!("{i}").as_bytes()).unwrap();
        fs.release(n);
    }
    assert_eq!(list(&fs, d).unwrap().len(), 100);
    fs.release(d);
    let mut img = disk.to_bytes();
    layout(&img).check(&img);
    assert_eq!(fatfs_tree(&mut img)["MANY/N77.TXT"], Some(b"77".to_vec()));
}

// ---- what is refused ----

#[test]
fn what_fat_cannot_do_is_refused() {
    let (fs, _) = mount(fat16_image());
    let root = fs.root();
    let file = NewNode::File { perm: 0o644 };
    for name in [
        "a long name.txt",
        "toolongname.txt",
        "name.text",
        "Mixed.txt",
        "a.b.c",
        "trailing.",
        "spa ce",
        "ünï.txt",
        "star*.txt",
    ] {
        assert!(
            matches!(fs.create(root, name, file), Err(K::InvalidName(_))),
            "{name}"
        );
    }
    for name in ["README.md", "lower.txt", "UP.TXT", "x"] {
        let n = fs.create(root, name, file).unwrap();
        fs.release(n);
    }
    let names: Vec<String> = list(&fs, root).unwrap().into_iter().map(|e| e.0).collect();
    for name in ["README.md", "lower.txt", "UP.TXT", "x"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    assert_eq!(fs.create(root, "up.txt", file), Err(K::AlreadyExists));
    assert_eq!(fs.create(root, "BIG.BIN", file), Err(K::AlreadyExists));
    assert_eq!(
        fs.create(root, "LINK", NewNode::Symlink { target: "BIG.BIN" }),
        Err(K::Unsupported)
    );
    assert_eq!(
        fs.rename(root, "BIG.BIN", root, "B.BIN"),
        Err(K::Unsupported)
    );
    let big = node(&fs, "BIG.BIN").unwrap();
    assert_eq!(
        fs.read_link(big),
        Err(K::InvalidArgument("not a symbolic link"))
    );
    assert!(matches!(
        fs.write(big, u64::from(u32::MAX) - 1, b"xy"),
        Err(K::InvalidArgument(_))
    ));
    assert!(matches!(
        fs.set_len(big, 1 << 32),
        Err(K::InvalidArgument(_))
    ));
    // A file with a handle cannot be removed; a directory that is not empty either.
    assert_eq!(fs.remove(root, "BIG.BIN", false), Err(K::Busy));
    fs.release(big);
    assert_eq!(fs.remove(root, "SMALL", true), Err(K::DirectoryNotEmpty));
    assert_eq!(fs.remove(root, "SMALL", false), Err(K::IsADirectory));
    assert_eq!(fs.remove(root, "BIG.BIN", true), Err(K::NotADirectory));
    assert_eq!(fs.remove(root, "NOPE", false), Err(K::NotFound));
    fs.remove(root, "BIG.BIN", false).unwrap();
}

#[test]
fn handles_are_checked() {
    let (fs, _) = mount(fat16_image());
    let root = fs.root();
    let a = fs.lookup(root, "BIG.BIN").unwrap();
    let b = fs.lookup(root, "big.bin").unwrap();
    assert_eq!(a, b, "one node per file");
    fs.release(a);
    assert!(fs.metadata(b).is_ok(), "still held once");
    fs.release(b);
    assert_eq!(fs.metadata(b), Err(K::Stale));
    assert_eq!(fs.read(b, 0, &mut [0; 4]), Err(K::Stale));
    fs.release(b);
    fs.release(root);
    assert!(fs.metadata(root).is_ok());
    assert_eq!(fs.metadata(0xdead_0000_0001), Err(K::Stale));
    let small = fs.lookup(root, "SMALL").unwrap();
    assert_eq!(fs.read(small, 0, &mut [0; 4]), Err(K::IsADirectory));
    assert_eq!(fs.write(small, 0, b"x"), Err(K::IsADirectory));
    assert_eq!(fs.set_len(small, 0), Err(K::IsADirectory));
    let f = fs.lookup(small, "F001.TXT").unwrap();
    assert_eq!(list(&fs, f), Err(K::NotADirectory));
    assert_eq!(fs.lookup(f, "X"), Err(K::NotADirectory));
    assert!(matches!(fs.lookup(small, ".."), Err(K::InvalidName(_))));
    fs.release(f);
    fs.release(small);
    assert_eq!(fs.usage().nodes, 1);
}

#[test]
fn a_read_only_disk_mounts_read_only() {
    let disk = Arc::new(MemDisk::<Raw>::from_bytes(fat16_image()).into_read_only());
    let fs = Fs::mount(disk.clone()).unwrap();
    assert_eq!(tree(&fs), sample_tree());
    let big = node(&fs, "BIG.BIN").unwrap();
    assert_eq!(fs.write(big, 0, b"x"), Err(K::ReadOnly));
    assert_eq!(fs.set_len(big, 0), Err(K::ReadOnly));
    fs.release(big);
    assert_eq!(
        fs.create(fs.root(), "A", NewNode::File { perm: 0o644 }),
        Err(K::ReadOnly)
    );
    assert_eq!(fs.remove(fs.root(), "EMPTY.TXT", false), Err(K::ReadOnly));
}

#[test]
fn a_disk_that_goes_away_gives_errors() {
    let (fs, disk) = mount(fat16_image());
    let big = node(&fs, "BIG.BIN").unwrap();
    disk.set_gone(true);
    assert!(matches!(fs.read(big, 0, &mut [0; 100]), Err(K::Io(_))));
    assert!(matches!(fs.write(big, 0, b"x"), Err(K::Io(_))));
    assert!(matches!(list(&fs, fs.root()), Err(K::Io(_))));
    assert!(
        fs.create(fs.root(), "A", NewNode::File { perm: 0o644 })
            .is_err()
    );
    let _ = fs.usage();
    disk.set_gone(false);
    assert_eq!(
        read_all(&fs, big).unwrap(),
        sample_tree()["BIG.BIN"].clone().unwrap()
    );
    fs.release(big);
}

// ---- damaged images ----

#[test]
fn a_damaged_boot_sector_does_not_mount() {
    let img = fat16_image();
    let mut zeroed = img.clone();
    zeroed[..SECTOR].fill(0);
    assert!(matches!(mount_err(zeroed), K::Io(_)));
    let damage = |at: usize, b: &[u8]| {
        let mut x = img.clone();
        x[at..at + b.len()].copy_from_slice(b);
        mount_err(x)
    };
    assert!(matches!(damage(510, &[0, 0]), K::Io(_)));
    assert_eq!(damage(11, &1024u16.to_le_bytes()), K::Unsupported);
    assert!(matches!(damage(11, &100u16.to_le_bytes()), K::Io(_)));
    assert!(matches!(damage(13, &[0]), K::Io(_)));
    assert!(matches!(damage(13, &[3]), K::Io(_)));
    assert!(matches!(damage(14, &[0, 0]), K::Io(_)));
    assert!(matches!(damage(16, &[0]), K::Io(_)));
    assert_eq!(damage(16, &[3]), K::Unsupported);
    assert!(matches!(damage(17, &[0, 0]), K::Io(_)));
    assert!(matches!(damage(19, &[0, 0]), K::Io(_)), "no sectors");
    assert!(
        matches!(damage(19, &[0xff, 0xff]), K::Io(_)),
        "past the disk"
    );
    assert!(
        matches!(damage(22, &[0xff, 0xff]), K::Io(_)),
        "FATs fill it"
    );
    assert!(matches!(damage(22, &[1, 0]), K::Io(_)), "FAT too small");
    assert!(matches!(damage(14, &[0xff, 0xff]), K::Io(_)));
    // FAT32: the root cluster, the FSInfo sector and its signatures, the version.
    let img = format(fatfs::FatType::Fat32, 81920, 512);
    let damage = |at: usize, b: &[u8]| {
        let mut x = img.clone();
        x[at..at + b.len()].copy_from_slice(b);
        mount_err(x)
    };
    assert!(matches!(damage(44, &[0, 0, 0, 0]), K::Io(_)));
    assert!(matches!(damage(44, &[0xff, 0xff, 0xff, 0x0f]), K::Io(_)));
    assert!(matches!(damage(48, &[0, 0]), K::Io(_)));
    assert!(matches!(damage(48, &[200, 0]), K::Io(_)));
    assert!(matches!(damage(SECTOR, &[0, 0, 0, 0]), K::Io(_)));
    assert_eq!(damage(42, &[0, 1]), K::Unsupported);
    assert!(matches!(damage(17, &[16, 0]), K::Io(_)));
    // Sizes FAT does not come in.
    assert_eq!(
        mount_err(format(fatfs::FatType::Fat12, 2048, 512)),
        K::Unsupported
    );
    assert!(matches!(mount_err(Vec::new()), K::Io(_)));
    assert!(matches!(mount_err(vec![0u8; 3 * SECTOR]), K::Io(_)));
}

#[test]
fn a_truncated_disk_does_not_mount() {
    for img in [fat16_image(), fat32_image()] {
        for keep in [1, 2, img.len() / SECTOR / 2, img.len() / SECTOR - 1] {
            let mut cut = img.clone();
            cut.truncate(keep * SECTOR);
            assert!(matches!(mount_err(cut), K::Io(_)), "{keep} sectors");
        }
    }
}

/// Every operation on `path`'s file fails (and fails again: nothing was changed); but a
/// chain merely shorter than its file can be removed (what is there is freed).
fn file_ops_fail(fs: &Fs, path: &str) {
    file_ops_fail_but(fs, path, false);
}

fn file_ops_fail_but(fs: &Fs, path: &str, removable: bool) {
    let n = node(fs, path).unwrap();
    let len = fs.metadata(n).unwrap().len;
    assert!(matches!(read_all(fs, n), Err(K::Io(_))));
    assert!(matches!(fs.write(n, 0, b"x"), Err(K::Io(_))));
    assert!(matches!(fs.write(n, len, b"x"), Err(K::Io(_))));
    assert!(matches!(fs.set_len(n, 1), Err(K::Io(_))));
    assert!(matches!(fs.set_len(n, len + 1), Err(K::Io(_))));
    fs.release(n);
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let d = node(fs, dir).unwrap();
    if removable {
        fs.remove(d, name, false).unwrap();
    } else {
        assert!(matches!(fs.remove(d, name, false), Err(K::Io(_))));
        let n = node(fs, path).unwrap();
        assert_eq!(fs.metadata(n).unwrap().len, len);
        fs.release(n);
    }
    if d != fs.root() {
        fs.release(d);
    }
}

#[test]
fn a_looping_cluster_chain_is_an_error_not_a_hang() {
    for img in [fat16_image(), fat32_image()] {
        let l = layout(&img);
        // A file's chain turned back on itself: at its third cluster, and on its first.
        for back in [2usize, 0] {
            let mut x = img.clone();
            let (.., first, _) = l.find(&x, "BIG.BIN");
            let chain = l.chain(&x, first);
            l.set(&mut x, chain[back + 3], chain[back]);
            let (fs, disk) = mount(x.clone());
            file_ops_fail(&fs, "BIG.BIN");
            // The first clusters still read: only what is walked is checked.
            let n = node(&fs, "BIG.BIN").unwrap();
            let mut buf = [0u8; 100];
            assert_eq!(fs.read(n, 0, &mut buf), Ok(100));
            fs.release(n);
            // The rest of the volume is as it was.
            let mut rest = sample_tree();
            rest.remove("BIG.BIN");
            let seen = tree_without(&fs, "BIG.BIN");
            assert_eq!(seen, rest);
            assert_eq!(disk.to_bytes(), x, "nothing written");
        }
        // A directory's chain that loops: SMALL spans several clusters.
        let mut x = img.clone();
        let (.., first, _) = l.find(&x, "SMALL");
        let chain = l.chain(&x, first);
        assert!(chain.len() >= 2);
        l.set(&mut x, *chain.last().unwrap(), first);
        let (fs, _) = mount(x);
        let small = node(&fs, "SMALL").unwrap();
        assert!(matches!(list(&fs, small), Err(K::Io(_))));
        assert!(matches!(fs.lookup(small, "F001.TXT"), Err(K::Io(_))));
        assert!(matches!(fs.metadata(small), Err(K::Io(_))));
        assert!(matches!(
            fs.create(small, "NEW.TXT", NewNode::File { perm: 0o644 }),
            Err(K::Io(_))
        ));
        assert!(matches!(fs.remove(fs.root(), "SMALL", true), Err(K::Io(_))));
        fs.release(small);
    }
}

/// [`tree`] without following `skip` (a file that cannot be read).
fn tree_without(fs: &Fs, skip: &str) -> Tree {
    let mut t = Tree::new();
    for (name, kind) in list(fs, fs.root()).unwrap() {
        if name == skip {
            continue;
        }
        let n = fs.lookup(fs.root(), &name).unwrap();
        match kind {
            FileType::Dir => {
                t.insert(name.clone(), None);
                let sub = tree_of(fs, n, &name);
                t.extend(sub);
            }
            _ => {
                t.insert(name, Some(read_all(fs, n).unwrap()));
            }
        }
        fs.release(n);
    }
    t
}

fn tree_of(fs: &Fs, dir: NodeId, at: &str) -> Tree {
    let mut t = Tree::new();
    for (name, kind) in list(fs, dir).unwrap() {
        let n = fs.lookup(dir, &name).unwrap();
        let path = format!("{at}/{name}");
        match kind {
            FileType::Dir => {
                t.insert(path.clone(), None);
                let sub = tree_of(fs, n, &path);
                t.extend(sub);
            }
            _ => {
                t.insert(path, Some(read_all(fs, n).unwrap()));
            }
        }
        fs.release(n);
    }
    t
}

#[test]
fn a_chain_pointing_outside_the_volume_or_into_free_space_is_an_error() {
    for img in [fat16_image(), fat32_image()] {
        let l = layout(&img);
        let (.., first, _) = l.find(&img, "BIG.BIN");
        let chain = l.chain(&img, first);
        let bad_mark = if l.fat16 { 0xFFF7 } else { 0x0FFF_FFF7 };
        for v in [l.clusters + 2, l.clusters + 100, 0, 1, bad_mark, 0xFFF0] {
            let mut x = img.clone();
            l.set(&mut x, chain[1], v);
            let (fs, _) = mount(x);
            file_ops_fail(&fs, "BIG.BIN");
        }
        // A chain shorter than its file.
        let mut x = img.clone();
        l.set(&mut x, chain[1], if l.fat16 { 0xFFFF } else { 0x0FFF_FFFF });
        let (fs, disk) = mount(x);
        file_ops_fail_but(&fs, "BIG.BIN", true);
        let after = disk.to_bytes();
        assert_eq!(
            l.free(&after),
            l.free(&img) + 2,
            "the two clusters there freed"
        );
        // A first cluster outside the volume, or none for a file with data.
        for c in [l.clusters + 2, 1, 0] {
            let mut x = img.clone();
            let (at, ..) = l.find(&x, "BIG.BIN");
            x[at + 26..at + 28].copy_from_slice(&(c as u16).to_le_bytes());
            x[at + 20..at + 22].copy_from_slice(&((c >> 16) as u16).to_le_bytes());
            let (fs, _) = mount(x);
            file_ops_fail(&fs, "BIG.BIN");
        }
        // A directory whose first cluster is 0 (the root: a loop in the tree) or outside.
        for c in [0, l.clusters + 2] {
            let mut x = img.clone();
            let (at, ..) = l.find(&x, "SMALL");
            x[at + 26..at + 28].copy_from_slice(&(c as u16).to_le_bytes());
            x[at + 20..at + 22].copy_from_slice(&((c >> 16) as u16).to_le_bytes());
            let (fs, _) = mount(x);
            let small = node(&fs, "SMALL").unwrap();
            assert!(matches!(list(&fs, small), Err(K::Io(_))));
            assert!(matches!(fs.metadata(small), Err(K::Io(_))));
            fs.release(small);
        }
    }
}

#[test]
fn a_long_name_slot_shadowing_a_short_name_is_refused() {
    // embedded-sdmmc finds entries by the first slot whose 11 bytes match: a long-name slot
    // with the short name's bytes would be taken for it.
    let mut img = format(fatfs::FatType::Fat16, 8192, 512);
    with_fatfs(&mut img, |fs| {
        put(fs, "Z1", b"");
        put(fs, "AAAAAAAA.AAA", b"data");
        fs.root_dir().remove("Z1").unwrap();
    });
    let l = layout(&img);
    let (at, ..) = l.find(&img, "AAAAAAAA.AAA");
    let slot = at - 32;
    assert_eq!(img[slot], 0xE5);
    // An orphan long-name slot whose first 11 bytes read "AAAAAAAAAAA".
    img[slot..slot + 32].fill(0x41);
    img[slot + 11] = 0x0F;
    let (fs, _) = mount(img);
    let names: Vec<String> = list(&fs, fs.root())
        .unwrap()
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(names, ["AAAAAAAA.AAA"]);
    assert!(matches!(
        fs.lookup(fs.root(), "AAAAAAAA.AAA"),
        Err(K::Io(_))
    ));
    assert!(matches!(
        fs.remove(fs.root(), "AAAAAAAA.AAA", false),
        Err(K::Io(_))
    ));
}

/// Mounts `img` and walks it all, bounded; every result a value or an error.
fn survive(img: Vec<u8>) {
    let Ok(fs) = Fs::mount(Arc::new(MemDisk::from_bytes(img))) else {
        return;
    };
    fn walk(fs: &Fs, dir: NodeId, depth: usize, budget: &mut usize) {
        let Ok(entries) = list(fs, dir) else { return };
        for (name, _) in entries.into_iter().take(20) {
            if *budget == 0 {
                return;
            }
            *budget -= 1;
            let Ok(n) = fs.lookup(dir, &name) else {
                continue;
            };
            if let Ok(m) = fs.metadata(n) {
                if m.is_dir() && depth < 6 {
                    walk(fs, n, depth + 1, budget);
                } else {
                    let mut buf = [0u8; 700];
                    for at in [0, m.len / 2, m.len.saturating_sub(1), m.len] {
                        if let Ok(k) = fs.read(n, at, &mut buf) {
                            assert!(k <= buf.len() && (at < m.len || k == 0));
                        }
                    }
                    let _ = fs.write(n, m.len / 3, b"poke");
                    let _ = fs.set_len(n, m.len / 2);
                }
            }
            fs.release(n);
        }
        let _ = fs
            .create(dir, "NEW.TXT", NewNode::File { perm: 0o644 })
            .map(|n| {
                let _ = fs.write(n, 3000, b"x");
                fs.release(n);
            });
        let _ = fs.remove(dir, "NEW.TXT", false);
    }
    let mut budget = 200;
    walk(&fs, fs.root(), 0, &mut budget);
    let _ = fs.usage();
}

#[test]
fn seeded_corruption_never_panics() {
    // Bytes flipped at random in the metadata (boot sector, FATs, root directory, the
    // first data clusters): mount, walk, read, write, truncate, create, remove.
    for (img, cases) in [(small_fat16(), 400), (format_and_fill_fat32_small(), 60)] {
        let l = layout(&img);
        let metadata = (l.first_data + 64 * l.spc) * SECTOR;
        let mut rng = noise(99, 40_000).into_iter();
        let mut next = || rng.next().unwrap() as usize;
        for case in 0..cases {
            let mut x = img.clone();
            for _ in 0..1 + case % 8 {
                let at = (next() << 16 | next() << 8 | next()) % metadata;
                x[at] = next() as u8;
            }
            survive(x);
        }
    }
}

fn small_fat16() -> Vec<u8> {
    let mut img = format(fatfs::FatType::Fat16, 4200, 512);
    let t: Tree = [
        ("A.TXT".to_string(), Some(b"alpha".to_vec())),
        ("B.BIN".to_string(), Some(noise(3, 5000))),
        ("SUB".to_string(), None),
        ("SUB/C.TXT".to_string(), Some(b"gamma".to_vec())),
        ("SUB/DEEP".to_string(), None),
        ("SUB/DEEP/D.TXT".to_string(), Some(noise(4, 1500))),
    ]
    .into();
    fill(&mut img, &t);
    img
}

fn format_and_fill_fat32_small() -> Vec<u8> {
    let mut img = format(fatfs::FatType::Fat32, 81920, 512);
    let t: Tree = [
        ("A.TXT".to_string(), Some(b"alpha".to_vec())),
        ("B.BIN".to_string(), Some(noise(3, 5000))),
        ("SUB".to_string(), None),
        ("SUB/C.TXT".to_string(), Some(b"gamma".to_vec())),
    ]
    .into();
    fill(&mut img, &t);
    img
}

// ---- through the VFS ----

#[test]
fn through_the_vfs() {
    let v = Vfs::<Raw>::new();
    v.mount("/", Arc::new(Tmpfs::<Raw>::new(1 << 20))).unwrap();
    v.create_dir("/disk").unwrap();
    let disk = Arc::new(MemDisk::<Raw>::from_bytes(fat16_image()));
    v.mount("/disk", Arc::new(Fs::mount(disk.clone()).unwrap()))
        .unwrap();
    let m = v.mounts();
    let fat = m.iter().find(|m| m.at == "/disk").unwrap();
    assert_eq!(fat.kind, "fat");
    assert!(fat.usage.used > (3 << 19) && fat.usage.limit.unwrap() > fat.usage.used);

    assert_eq!(
        v.read("/disk/big.bin").unwrap(),
        sample_tree()["BIG.BIN"].clone().unwrap()
    );
    let names: Vec<String> = v
        .read_dir("/disk/small")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names.len(), 300);
    assert!(v.metadata("/disk/D0/D1/D2").unwrap().is_dir());

    v.write("/disk/hello.txt", b"hello, fat").unwrap();
    assert_eq!(v.read("/disk/hello.txt").unwrap(), b"hello, fat");
    v.write("/disk/hello.txt", b"shorter").unwrap();
    assert_eq!(v.read("/disk/hello.txt").unwrap(), b"shorter");
    let mut f = v
        .open("/disk/hello.txt", OpenOptions::new().append(true))
        .unwrap();
    f.write_all(b", appended").unwrap();
    f.set_len(9).unwrap();
    drop(f);
    assert_eq!(v.read("/disk/hello.txt").unwrap(), b"shorter, ");
    let mut f = v
        .open("/disk/hello.txt", OpenOptions::new().read(true))
        .unwrap();
    f.seek(SeekFrom::Start(2)).unwrap();
    let mut buf = [0u8; 3];
    f.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ort");
    // Open: cannot be removed (FAT cannot keep it for its reader).
    assert_eq!(v.remove_file("/disk/hello.txt").unwrap_err().kind, K::Busy);
    drop(f);
    v.remove_file("/disk/hello.txt").unwrap();
    assert_eq!(v.metadata("/disk/hello.txt").unwrap_err().kind, K::NotFound);

    v.create_dir_all("/disk/a/b/c").unwrap();
    v.write("/disk/a/b/c/x.txt", b"deep").unwrap();
    assert_eq!(
        v.remove_dir("/disk/a/b").unwrap_err().kind,
        K::DirectoryNotEmpty
    );
    v.remove_file("/disk/a/b/c/x.txt").unwrap();
    v.remove_dir("/disk/a/b/c").unwrap();
    assert_eq!(
        v.rename("/disk/big.bin", "/disk/b.bin").unwrap_err().kind,
        K::Unsupported
    );
    assert_eq!(
        v.symlink("big.bin", "/disk/link").unwrap_err().kind,
        K::Unsupported
    );
    assert!(matches!(
        v.write("/disk/a long name.txt", b"x").unwrap_err().kind,
        K::InvalidName(_)
    ));
    assert_eq!(
        v.rename("/disk/big.bin", "/big.bin").unwrap_err().kind,
        K::CrossesMounts
    );
    // Busy while a file is open; then unmounted, and fatfs agrees with it all.
    let f = v
        .open("/disk/big.bin", OpenOptions::new().read(true))
        .unwrap();
    assert_eq!(v.unmount("/disk").unwrap_err().kind, K::Busy);
    drop(f);
    v.unmount("/disk").unwrap();
    let mut img = disk.to_bytes();
    layout(&img).check(&img);
    let seen = fatfs_tree(&mut img);
    assert!(seen.contains_key("A/B") && !seen.contains_key("A/B/C"));
    assert!(!seen.contains_key("HELLO.TXT"));
}

// ---- block devices ----

#[test]
fn mem_disk_checks_every_transfer() {
    use crate::block::{BlockError as E, check_transfer};
    let d = MemDisk::<Raw>::zeroed(4).unwrap();
    assert_eq!(d.sectors(), 4);
    let mut buf = [0u8; 1024];
    assert_eq!(d.read(3, &mut buf), Err(E::OutOfRange));
    assert_eq!(d.read(0, &mut buf[..100]), Err(E::Misaligned));
    assert_eq!(d.read(0, &mut buf[..0]), Err(E::Misaligned));
    assert_eq!(d.write(u64::MAX, &buf), Err(E::OutOfRange));
    d.write(2, &[7u8; 1024]).unwrap();
    d.read(1, &mut buf).unwrap();
    assert_eq!((buf[511], buf[512]), (0, 7));
    assert_eq!(check_transfer(4, 4, 512), Err(E::OutOfRange));
    assert_eq!(K::from(E::ReadOnly), K::ReadOnly);
    let ro = MemDisk::<Raw>::from_bytes(vec![1; 100]).into_read_only();
    assert_eq!(ro.sectors(), 1);
    assert_eq!(ro.write(0, &[0; 512]), Err(E::ReadOnly));
    assert_eq!(
        ro.into_bytes()[..101],
        [[1u8; 100].as_slice(), &[0]].concat()
    );
}

// ---- fuzz seeds ----

/// The fuzz target's input for an image (see `fuzz/src/fat.rs`): the disk's sectors, then
/// runs of sectors that are not zero, each its first sector, its count and its bytes.
fn sparse(img: &[u8]) -> Vec<u8> {
    let sectors: Vec<&[u8]> = img.chunks(SECTOR).collect();
    let mut out = (sectors.len() as u32).to_le_bytes().to_vec();
    let mut i = 0;
    while i < sectors.len() {
        if sectors[i].iter().all(|&b| b == 0) {
            i += 1;
            continue;
        }
        let start = i;
        while i < sectors.len() && i - start < 64 && sectors[i].iter().any(|&b| b != 0) {
            i += 1;
        }
        out.extend_from_slice(&(start as u32).to_le_bytes());
        out.extend_from_slice(&((i - start) as u16).to_le_bytes());
        for s in &sectors[start..i] {
            out.extend_from_slice(s);
        }
    }
    out
}

#[test]
fn fuzz_seeds_are_small() {
    // With RHEA_WRITE_FAT_SEEDS=<dir> set, writes them there (fuzz/corpus/fat).
    let mut fat16 = small_fat16();
    add_long_name_seed(&mut fat16);
    let fat32 = format_and_fill_fat32_small();
    let mut mbr = vec![0u8; 63 * SECTOR];
    mbr[446 + 4] = 0x0E;
    mbr[446 + 8..446 + 12].copy_from_slice(&63u32.to_le_bytes());
    mbr[446 + 12..446 + 16].copy_from_slice(&((fat16.len() / SECTOR) as u32).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    mbr.extend_from_slice(&fat16);
    let mut looped = small_fat16();
    let l = layout(&looped);
    let (.., first, _) = l.find(&looped, "B.BIN");
    let chain = l.chain(&looped, first);
    l.set(&mut looped, chain[5], chain[1]);
    let seeds = [
        ("fat16", fat16),
        ("fat32", fat32),
        ("mbr-fat16", mbr),
        ("fat16-loop", looped),
    ];
    for (name, img) in &seeds {
        let s = sparse(img);
        assert!(s.len() < 64 * 1024, "{name}: {} bytes", s.len());
        if let Ok(dir) = std::env::var("RHEA_WRITE_FAT_SEEDS") {
            std::fs::write(format!("{dir}/{name}"), &s).unwrap();
        }
        survive(img.clone());
    }
}

fn add_long_name_seed(img: &mut Vec<u8>) {
    with_fatfs(img, |fs| {
        put(fs, "Q1", b"");
        put(fs, "Q2", b"");
        put(fs, "LONGNA~1.TXT", b"a long name");
        fs.root_dir().remove("Q1").unwrap();
        fs.root_dir().remove("Q2").unwrap();
    });
    add_long_name(img, "LONGNA~1.TXT", "A long name.txt", 0);
}

#[test]
fn metadata_times_are_dos_times() {
    let mut img = small_fat16();
    let l = layout(&img);
    let (at, ..) = l.find(&img, "A.TXT");
    // 2024-02-29 13:45:58: date (44 << 9 | 2 << 5 | 29), time (13 << 11 | 45 << 5 | 29).
    img[at + 24..at + 26].copy_from_slice(&((44u16 << 9) | (2 << 5) | 29).to_le_bytes());
    img[at + 22..at + 24].copy_from_slice(&((13u16 << 11) | (45 << 5) | 29).to_le_bytes());
    let (b, ..) = l.find(&img, "B.BIN");
    img[b + 24..b + 26].copy_from_slice(&((44u16 << 9) | (13 << 5) | 1).to_le_bytes());
    let (fs, _) = mount(img);
    let a = node(&fs, "A.TXT").unwrap();
    assert_eq!(fs.metadata(a).unwrap().modified, Some(1_709_214_358));
    let b = node(&fs, "B.BIN").unwrap();
    assert_eq!(fs.metadata(b).unwrap().modified, None, "month 13");
    fs.release(a);
    fs.release(b);
}
