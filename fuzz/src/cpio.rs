//! `cpio`: an initramfs as a boot loader hands it over — the newc reader
//! ([`rhea_vfs::cpio::Reader`]) over the bytes, then the initramfs index
//! ([`rhea_vfs::CpioFs::new`]) and, when it mounts, the whole tree walked through the
//! file-system contract: every directory listed, every entry looked up, every file read at
//! several offsets, every link read, every error rendered.
//! Invariant: entries or an error naming the offset, never a panic.
//!
//! Input: the archive's bytes.

use rhea_vfs::{CpioFs, FileSystem, FileType, NodeId};
use std::fmt::Write;

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut out = String::new();
    for e in rhea_vfs::cpio::Reader::new(data) {
        match e {
            Ok(e) => {
                let _ = write!(out, "{} {:o} {}", e.name, e.mode, e.data.len());
            }
            Err(e) => {
                let _ = write!(out, "{e}");
            }
        }
    }
    match CpioFs::new(data) {
        Ok(fs) => walk(&fs, fs.root(), 0, &mut out),
        Err(e) => {
            let _ = write!(out, "{e}");
        }
    }
}

fn walk(fs: &CpioFs<'_>, dir: NodeId, depth: usize, out: &mut String) {
    assert!(depth <= rhea_vfs::path::MAX_DEPTH, "the index is deeper than the limit");
    let mut names = Vec::new();
    fs.read_dir(dir, 0, &mut |_, name, kind| {
        names.push((name.to_string(), kind));
        true
    })
    .expect("a directory lists");
    for (name, kind) in names {
        let node = fs.lookup(dir, &name).expect("a listed name is found");
        let meta = fs.metadata(node).expect("a found node has metadata");
        assert_eq!(meta.kind, kind, "listing and metadata agree");
        match kind {
            FileType::Dir => walk(fs, node, depth + 1, out),
            FileType::File => {
                let mut buf = [0u8; 64];
                for at in [0, 1, meta.len.saturating_sub(1), meta.len, meta.len + 7, u64::MAX] {
                    let n = fs.read(node, at, &mut buf).expect("a file reads");
                    assert!(at < meta.len || n == 0, "read past the end");
                }
            }
            FileType::Symlink => {
                if let Err(e) = fs.read_link(node) {
                    let _ = write!(out, "{e}");
                }
            }
            FileType::Other => {
                let _ = fs.read(node, 0, &mut [0u8; 4]);
            }
        }
        fs.release(node);
    }
}
