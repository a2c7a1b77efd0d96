//! `fat`: a disk image as a hostile USB stick or SD card holds it — the FAT file system
//! ([`rhea_vfs::FatFs`], over embedded-sdmmc) mounts it (a bare volume or an MBR
//! partition), walks the tree and reads every file at several offsets, then creates, writes
//! (past the end too), extends, truncates and removes, touches the image's own first
//! entries the same way, and walks again. Everything is bounded: nodes visited, depth,
//! bytes read.
//! Invariant: every operation returns a value or an error, never a panic, an overflow (the
//! fuzz profile keeps overflow checks on, in embedded-sdmmc too), a hang or an unbounded
//! allocation; a read returns at most what was asked, and nothing at or past the end.
//!
//! Input: the image, sparse — FAT32 needs 32 MiB or more, mostly zeros, and seeds stay
//! small: a 32-bit little-endian count of sectors (at most [`MAX_SECTORS`]), then runs, each
//! a 32-bit first sector, a 16-bit count of sectors and their 512-byte contents (cut short
//! by the end of the input: zeros). A sector in no run reads as zeros. The seeds in
//! `fuzz/corpus/fat` are real images in this form (`rhea-vfs`'s test
//! `fuzz_seeds_are_small` writes them when `RHEA_WRITE_FAT_SEEDS` names a directory).

use crate::Input;
use rhea_vfs::block::{BlockDevice, BlockError, SECTOR, check_transfer};
use rhea_vfs::{FatFs, FileSystem, FileType, NewNode, NodeId};
use std::collections::BTreeMap;
use std::sync::Mutex;

type Raw = spin::mutex::SpinMutex<()>;

/// The largest disk an input describes: 64 MiB (room for a FAT32 volume).
pub const MAX_SECTORS: u64 = 1 << 17;

/// A disk whose sectors are zeros unless the input or a write gave them bytes.
struct Sparse {
    sectors: u64,
    data: Mutex<BTreeMap<u64, Box<[u8; SECTOR]>>>,
}

impl Sparse {
    fn parse(bytes: &[u8]) -> Sparse {
        let mut input = Input::new(bytes);
        let sectors = u64::from(input.u32()).min(MAX_SECTORS);
        let mut data = BTreeMap::new();
        while !input.is_empty() {
            let first = u64::from(input.u32());
            let count = input.u16();
            for i in 0..u64::from(count) {
                let b = input.take(SECTOR);
                if b.is_empty() {
                    break;
                }
                if first + i < sectors {
                    let mut s = Box::new([0u8; SECTOR]);
                    s[..b.len()].copy_from_slice(b);
                    data.insert(first + i, s);
                }
            }
        }
        Sparse {
            sectors,
            data: Mutex::new(data),
        }
    }
}

impl BlockDevice for Sparse {
    fn sectors(&self) -> u64 {
        self.sectors
    }

    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_transfer(self.sectors, sector, buf.len())?;
        let data = self.data.lock().unwrap();
        for (i, out) in buf.chunks_mut(SECTOR).enumerate() {
            match data.get(&(sector + i as u64)) {
                Some(s) => out.copy_from_slice(&s[..]),
                None => out.fill(0),
            }
        }
        Ok(())
    }

    fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        check_transfer(self.sectors, sector, buf.len())?;
        let mut data = self.data.lock().unwrap();
        for (i, b) in buf.chunks(SECTOR).enumerate() {
            let mut s = Box::new([0u8; SECTOR]);
            s.copy_from_slice(b);
            data.insert(sector + i as u64, s);
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), BlockError> {
        Ok(())
    }

    fn read_only(&self) -> bool {
        false
    }
}

type Fs = FatFs<Raw, Sparse>;

/// Runs one input.
pub fn run(data: &[u8]) {
    let Ok(fs) = Fs::mount(Sparse::parse(data)) else {
        return;
    };
    let mut budget = 120;
    walk(&fs, fs.root(), 0, &mut budget);
    let root = fs.root();
    if let Ok(n) = fs.create(root, "NEW.TXT", NewNode::File { perm: 0o644 }) {
        let _ = fs.write(n, 0, &[0xAB; 3000]);
        let _ = fs.write(n, 5000, b"past the end");
        let _ = fs.set_len(n, 700);
        let _ = fs.set_len(n, 9000);
        check_reads(&fs, n);
        fs.release(n);
    }
    if let Ok(d) = fs.create(root, "NEWDIR", NewNode::Dir { perm: 0o755 }) {
        if let Ok(n) = fs.create(d, "in.txt", NewNode::File { perm: 0o644 }) {
            let _ = fs.write(n, 0, b"inside");
            fs.release(n);
        }
        let _ = fs.remove(d, "in.txt", false);
        fs.release(d);
        let _ = fs.remove(root, "NEWDIR", true);
    }
    let _ = fs.remove(root, "NEW.TXT", false);
    // The image's own first entries: appended to, truncated, removed.
    let mut first = Vec::new();
    let _ = fs.read_dir(root, 0, &mut |_, name, kind| {
        first.push((name.to_string(), kind));
        first.len() < 3
    });
    for (name, kind) in first {
        if kind == FileType::File
            && let Ok(n) = fs.lookup(root, &name)
        {
            if let Ok(m) = fs.metadata(n) {
                let _ = fs.write(n, m.len, b"more");
                let _ = fs.set_len(n, m.len / 2);
            }
            fs.release(n);
        }
        let _ = fs.remove(root, &name, kind == FileType::Dir);
    }
    let mut budget = 60;
    walk(&fs, root, 0, &mut budget);
    let _ = fs.usage();
}

/// Lists `dir` and visits what it holds, depth first, while `budget` lasts.
fn walk(fs: &Fs, dir: NodeId, depth: usize, budget: &mut usize) {
    let mut entries = Vec::new();
    let listed = fs.read_dir(dir, 0, &mut |_, name, kind| {
        assert!(!name.is_empty() && !name.contains('/'), "a listed name");
        entries.push((name.to_string(), kind));
        entries.len() < 32
    });
    if listed.is_err() {
        return;
    }
    for (name, _) in entries {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let Ok(n) = fs.lookup(dir, &name) else {
            continue;
        };
        match fs.metadata(n) {
            Ok(m) if m.is_dir() => {
                if depth < 8 {
                    walk(fs, n, depth + 1, budget);
                }
            }
            Ok(_) => check_reads(fs, n),
            Err(_) => {}
        }
        fs.release(n);
    }
}

/// Reads `n` at its start, middle and end, and past it.
fn check_reads(fs: &Fs, n: NodeId) {
    let Ok(m) = fs.metadata(n) else { return };
    let mut buf = vec![0u8; 4096];
    for at in [0, 1, m.len / 2, m.len.saturating_sub(1), m.len, m.len + 7] {
        if let Ok(k) = fs.read(n, at, &mut buf) {
            assert!(k <= buf.len(), "a read longer than its buffer");
            assert!(at < m.len || k == 0, "a read at or past the end");
            assert!(k as u64 <= m.len.saturating_sub(at), "a read past the end");
        }
    }
}
