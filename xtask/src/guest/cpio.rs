//! The initramfs: a cpio archive in the "newc" format ([`Cpio`]) and the set of files that
//! go into one ([`Tree`]), written with every parent directory before its children.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rhea_vfs::cpio::Writer;

use super::read;
use crate::Result;

/// A cpio archive in the "newc" format (the one the Linux initramfs unpacker reads), written
/// by `rhea_vfs::cpio::Writer` (the format's one writer, beside Rhea's reader). Owners are
/// root, mtimes 0, so the output is reproducible.
pub(crate) struct Cpio(Writer);

const S_IFCHR: u32 = rhea_vfs::cpio::S_IFCHR;

impl Cpio {
    pub(crate) fn new() -> Cpio {
        Cpio(Writer::new())
    }

    /// A directory (`name` without a leading `/`; parents must come first).
    pub(crate) fn dir(&mut self, name: &str) {
        self.0.dir(name, 0o755);
    }

    /// A regular file with permission bits `perm`.
    pub(crate) fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.0.file(name, perm, data);
    }

    /// A symbolic link to `target`.
    pub(crate) fn symlink(&mut self, name: &str, target: &str) {
        self.0.symlink(name, target);
    }

    /// A character device node.
    pub(crate) fn char_device(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        self.0.entry(name, S_IFCHR | perm, 1, (major, minor), &[]);
    }

    /// Appends the trailer and returns the archive.
    pub(crate) fn finish(self) -> Vec<u8> {
        self.0.finish()
    }
}

/// The files of an initramfs, by guest path (without a leading `/`).
#[derive(Debug, Default, Clone)]
pub(crate) struct Tree {
    /// Regular files copied from the host (mode 0755).
    pub(crate) files: BTreeMap<String, PathBuf>,
    /// Symbolic links and their targets.
    pub(crate) links: BTreeMap<String, String>,
    /// Regular files written from memory: permission bits and contents.
    pub(crate) texts: BTreeMap<String, (u32, Vec<u8>)>,
    /// Directories besides the parents of the entries above (e.g. `proc`, `tmp`).
    pub(crate) dirs: BTreeSet<String>,
    /// Whether `/dev/console` is a device node (the kernel opens it for `/init` before
    /// anything mounts devtmpfs).
    pub(crate) console: bool,
}

impl Tree {
    /// A file written from memory.
    pub(crate) fn text(&mut self, guest: &str, perm: u32, data: &[u8]) {
        self.texts.insert(guest.to_string(), (perm, data.to_vec()));
    }

    /// Every directory: those named and every parent of an entry, parents first.
    pub(crate) fn all_dirs(&self) -> Vec<String> {
        let mut dirs: BTreeSet<String> = self.dirs.clone();
        if self.console {
            dirs.insert("dev".to_string());
        }
        let names = self
            .files
            .keys()
            .chain(self.links.keys())
            .chain(self.texts.keys())
            .chain(self.dirs.iter());
        for name in names {
            let mut p = Path::new(name).parent();
            while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
                dirs.insert(d.to_string_lossy().into_owned());
                p = d.parent();
            }
        }
        let mut all: Vec<String> = dirs.into_iter().collect();
        all.sort_by(|a, b| (a.matches('/').count(), a).cmp(&(b.matches('/').count(), b)));
        all
    }

    /// The archive: directories, `/dev/console`, the texts, the files (read now), the links.
    pub(crate) fn cpio(&self) -> Result<Vec<u8>> {
        let mut cpio = Cpio::new();
        for d in self.all_dirs() {
            cpio.dir(&d);
        }
        if self.console {
            cpio.char_device("dev/console", 0o600, 5, 1);
        }
        for (name, (perm, data)) in &self.texts {
            cpio.file(name, *perm, data);
        }
        for (guest, host) in &self.files {
            cpio.file(guest, 0o755, &read(host)?);
        }
        for (guest, target) in &self.links {
            cpio.symlink(guest, target);
        }
        Ok(cpio.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, mode, (rdevmajor, rdevminor), data) of one archive entry.
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// Reads a newc archive back, trailer excluded.
    fn read_cpio(mut b: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            assert_eq!(&b[..6], b"070701", "magic at offset {offset}");
            let field = |i: usize| {
                let s = std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap();
                u32::from_str_radix(s, 16).unwrap()
            };
            let (mode, size, rdev, namesize) = (
                field(1),
                field(6) as usize,
                (field(9), field(10)),
                field(11) as usize,
            );
            let name = std::str::from_utf8(&b[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            assert_eq!(b[110 + namesize - 1], 0);
            let data_at = (110 + namesize).next_multiple_of(4);
            let end = (data_at + size).next_multiple_of(4);
            if name == "TRAILER!!!" {
                assert_eq!(b.len(), end, "nothing after the trailer");
                return out;
            }
            out.push((name, mode, rdev, b[data_at..data_at + size].to_vec()));
            offset += end;
            b = &b[end..];
        }
    }

    #[test]
    fn cpio_known_bytes() {
        let mut c = Cpio::new();
        c.dir("a");
        c.file("a/f", 0o644, b"xyz");
        let bytes = c.finish();
        // Fields: ino mode uid gid nlink mtime filesize devmaj devmin rdevmaj rdevmin namesize
        // check; then the name with its NUL, padded to 4, and the data, padded to 4.
        let z = "00000000";
        let dir = [
            "070701", "00000001", "000041ed", z, z, "00000002", z, z, z, z, z, z, "00000002", z,
            "a\0",
        ]
        .concat();
        let file = [
            "070701", "00000002", "000081a4", z, z, "00000001", z, "00000003", z, z, z, z,
            "00000004", z, "a/f\0", "\0\0", "xyz\0",
        ]
        .concat();
        let trailer = [
            "070701",
            z,
            z,
            z,
            z,
            "00000001",
            z,
            z,
            z,
            z,
            z,
            z,
            "0000000b",
            z,
            "TRAILER!!!\0",
            "\0\0\0",
        ]
        .concat();
        assert_eq!(dir.len(), 112);
        assert_eq!(file.len(), 120);
        assert_eq!(trailer.len(), 124);
        let expected = [dir, file, trailer].concat();
        assert_eq!(String::from_utf8_lossy(&bytes), expected);
    }

    #[test]
    fn cpio_round_trip() {
        let mut c = Cpio::new();
        c.dir("bin");
        c.dir("dev");
        c.char_device("dev/console", 0o600, 5, 1);
        c.file("init", 0o755, b"#!/bin/sh\n");
        c.symlink("bin/sh", "busybox");
        let data: Vec<u8> = (0..1001u32).map(|i| i as u8).collect();
        c.file("bin/busybox", 0o755, &data);
        c.file("empty", 0o644, b"");
        let entries = read_cpio(&c.finish());
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "dev",
                "dev/console",
                "init",
                "bin/sh",
                "bin/busybox",
                "empty"
            ]
        );
        assert_eq!(entries[0].1, 0o040755);
        assert_eq!((entries[2].1, entries[2].2), (0o020600, (5, 1)));
        assert_eq!(
            (entries[3].1, entries[3].3.as_slice()),
            (0o100755, &b"#!/bin/sh\n"[..])
        );
        assert_eq!(
            (entries[4].1, entries[4].3.as_slice()),
            (0o120777, &b"busybox"[..])
        );
        assert_eq!(entries[5].3, data);
        assert!(entries[6].3.is_empty());
    }

    #[test]
    fn tree_layout() {
        let host = std::env::temp_dir().join(format!("xtask-cpio-{}", std::process::id()));
        std::fs::write(&host, b"ELF").unwrap();
        let mut t = Tree::default();
        t.files.insert("usr/lib/x/bin/xl".into(), host.clone());
        t.links
            .insert("usr/sbin/xl".into(), "/usr/lib/x/bin/xl".into());
        t.text("etc/xen/xl.conf", 0o644, b"a=1\n");
        t.dirs.insert("proc".into());
        t.console = true;
        assert_eq!(
            t.all_dirs(),
            [
                "dev",
                "etc",
                "proc",
                "usr",
                "etc/xen",
                "usr/lib",
                "usr/sbin",
                "usr/lib/x",
                "usr/lib/x/bin"
            ]
        );
        let entries = read_cpio(&t.cpio().unwrap());
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names[9..],
            [
                "dev/console",
                "etc/xen/xl.conf",
                "usr/lib/x/bin/xl",
                "usr/sbin/xl"
            ]
        );
        assert_eq!((entries[9].1, entries[9].2), (0o020600, (5, 1)));
        assert_eq!(
            (entries[10].1, entries[10].3.as_slice()),
            (0o100644, &b"a=1\n"[..])
        );
        assert_eq!(
            (entries[11].1, entries[11].3.as_slice()),
            (0o100755, &b"ELF"[..])
        );
        assert_eq!(entries[12].3, b"/usr/lib/x/bin/xl");
        // A host file that is gone is an error naming it.
        std::fs::remove_file(&host).unwrap();
        assert!(t.cpio().unwrap_err().to_string().contains("cannot read"));
    }
}
