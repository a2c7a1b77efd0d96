//! The cpio "newc" archive (the format of Linux's initramfs): a reader that checks every
//! field and never reads past the buffer, and a writer.
//!
//! Per entry: a 110-byte ASCII header — the magic `070701` (or `070702`, "with checksum",
//! whose sum is not checked) and 13 eight-digit hex fields: ino, mode, uid, gid, nlink, mtime,
//! filesize, devmajor, devminor, rdevmajor, rdevminor, namesize (with the NUL), check — then the
//! NUL-terminated name, padded so the data starts on a multiple of 4, then the data, padded
//! to 4. The entry named `TRAILER!!!` ends an archive. As the Linux unpacker does, zero bytes
//! after a trailer are padding and another archive may follow (concatenated archives).

use alloc::vec::Vec;
use core::fmt;

/// The header's length in bytes.
pub const HEADER_BYTES: usize = 110;
/// The name that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";
/// The longest name (with its NUL) the reader accepts: Linux's `PATH_MAX`.
pub const MAX_NAME_BYTES: usize = 4096;

/// File-type bits of `mode`.
pub const S_IFMT: u32 = 0o170_000;
/// A directory.
pub const S_IFDIR: u32 = 0o040_000;
/// A regular file.
pub const S_IFREG: u32 = 0o100_000;
/// A symbolic link (its data is the target).
pub const S_IFLNK: u32 = 0o120_000;
/// A character device.
pub const S_IFCHR: u32 = 0o020_000;

/// One entry, borrowed from the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The name as stored (without the NUL; not yet checked as a path).
    pub name: &'a str,
    /// Inode number (shared by hard links).
    pub ino: u32,
    /// Type and permission bits.
    pub mode: u32,
    /// Number of links.
    pub nlink: u32,
    /// Modification time, seconds since 1970.
    pub mtime: u32,
    /// Device number of a device node (major, minor).
    pub rdev: (u32, u32),
    /// The data (a symbolic link's target).
    pub data: &'a [u8],
    /// Offset of the entry's header in the archive.
    pub offset: usize,
}

/// What is wrong with an archive, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpioError {
    /// Offset of the entry's header.
    pub offset: usize,
    /// What is wrong.
    pub why: Why,
}

/// What is wrong with an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// The archive ends inside this part of the entry.
    Truncated(&'static str),
    /// The header does not start with `070701` or `070702`.
    BadMagic,
    /// A header field is not 8 hex digits.
    BadField(&'static str),
    /// `namesize` is 0 or over [`MAX_NAME_BYTES`].
    BadNameSize(u32),
    /// The name's last byte is not its NUL, or it holds another NUL.
    NameNotTerminated,
    /// The name is not UTF-8.
    NameNotUtf8,
    /// The archive ended without a `TRAILER!!!` entry.
    NoTrailer,
    /// Bytes after a trailer that are neither zero padding nor another archive.
    Garbage,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Truncated(part) => write!(f, "the archive ends inside the entry's {part}"),
            Why::BadMagic => f.write_str("no cpio newc magic (070701)"),
            Why::BadField(name) => write!(f, "header field {name} is not 8 hex digits"),
            Why::BadNameSize(n) => write!(f, "name size {n} (1 to {MAX_NAME_BYTES} allowed)"),
            Why::NameNotTerminated => f.write_str("the name is not NUL-terminated"),
            Why::NameNotUtf8 => f.write_str("the name is not UTF-8"),
            Why::NoTrailer => f.write_str("no TRAILER!!! entry at the end"),
            Why::Garbage => f.write_str("bytes after the trailer that are not another archive"),
        }
    }
}

impl fmt::Display for CpioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cpio entry at byte {}: {}", self.offset, self.why)
    }
}

const FIELDS: [&str; 13] = [
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
];

/// The entries of an archive in order, trailers left out; after an error, nothing more.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
    at: usize,
    done: bool,
}

impl<'a> Reader<'a> {
    /// A reader of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            at: 0,
            done: false,
        }
    }

    fn hex(field: &[u8], name: &'static str) -> Result<u32, Why> {
        let mut v = 0u32;
        for &b in field {
            let d = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                _ => return Err(Why::BadField(name)),
            };
            v = (v << 4) | u32::from(d);
        }
        Ok(v)
    }

    /// The entry at `self.at` (a trailer included).
    fn entry(&self) -> Result<(Entry<'a>, usize), Why> {
        let d = self.data;
        let at = self.at;
        let hdr = d
            .get(at..at + HEADER_BYTES)
            .ok_or(Why::Truncated("header"))?;
        if &hdr[..6] != b"070701" && &hdr[..6] != b"070702" {
            return Err(Why::BadMagic);
        }
        let mut f = [0u32; 13];
        for (i, name) in FIELDS.iter().enumerate() {
            f[i] = Self::hex(&hdr[6 + 8 * i..14 + 8 * i], name)?;
        }
        let namesize = f[11];
        if namesize == 0 || namesize as usize > MAX_NAME_BYTES {
            return Err(Why::BadNameSize(namesize));
        }
        let name_at = at + HEADER_BYTES;
        let name_end = name_at + namesize as usize;
        let raw = d.get(name_at..name_end).ok_or(Why::Truncated("name"))?;
        let (nul, name) = raw.split_last().ok_or(Why::NameNotTerminated)?;
        if *nul != 0 || name.contains(&0) {
            return Err(Why::NameNotTerminated);
        }
        let name = core::str::from_utf8(name).map_err(|_| Why::NameNotUtf8)?;
        let data_at = name_end.next_multiple_of(4);
        let size = f[6] as usize;
        let data = data_at
            .checked_add(size)
            .and_then(|end| d.get(data_at..end))
            .ok_or(Why::Truncated("data"))?;
        let next = (data_at + size).next_multiple_of(4);
        let entry = Entry {
            name,
            ino: f[0],
            mode: f[1],
            nlink: f[4],
            mtime: f[5],
            rdev: (f[9], f[10]),
            data,
            offset: at,
        };
        Ok((entry, next))
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Entry<'a>, CpioError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            if self.at >= self.data.len() {
                self.done = true;
                return Some(Err(CpioError {
                    offset: self.at,
                    why: Why::NoTrailer,
                }));
            }
            let (entry, next) = match self.entry() {
                Ok(e) => e,
                Err(why) => {
                    self.done = true;
                    return Some(Err(CpioError {
                        offset: self.at,
                        why,
                    }));
                }
            };
            // The padding after the last entry may run past the end of the buffer.
            self.at = next.min(self.data.len());
            if entry.name != TRAILER {
                return Some(Ok(entry));
            }
            // After a trailer: zero padding, then the end or another archive.
            let rest = &self.data[self.at..];
            let skip = rest.iter().take_while(|&&b| b == 0).count();
            self.at += skip;
            if self.at == self.data.len() {
                self.done = true;
                return None;
            }
            // Another archive must start on a 4-byte boundary with the magic.
            if !self.at.is_multiple_of(4) || !self.data[self.at..].starts_with(b"07070") {
                self.done = true;
                return Some(Err(CpioError {
                    offset: self.at,
                    why: Why::Garbage,
                }));
            }
        }
    }
}

/// Writes an archive: owners root, times as given (0 by default), so the output is
/// reproducible.
#[derive(Debug, Default)]
pub struct Writer {
    out: Vec<u8>,
    next_ino: u32,
}

impl Writer {
    /// An empty archive.
    pub fn new() -> Self {
        Self {
            out: Vec::new(),
            next_ino: 1,
        }
    }

    /// An entry of any kind. Panics if `data` is 4 GiB or more or the name is too long for
    /// the format (a writer's misuse, not input).
    pub fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        let ino = if name == TRAILER {
            0
        } else {
            self.next_ino += 1;
            self.next_ino - 1
        };
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            u32::try_from(data.len()).expect("cpio newc holds files below 4 GiB"),
            0,
            0,
            rdev.0,
            rdev.1,
            u32::try_from(name.len() + 1).expect("a name below 4 GiB"),
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for v in fields {
            for shift in (0..8).rev() {
                let d = ((v >> (shift * 4)) & 0xf) as u8;
                self.out.push(if d < 10 { b'0' + d } else { b'a' + d - 10 });
            }
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// A directory (parents first; no leading `/`).
    pub fn dir(&mut self, name: &str, perm: u32) {
        self.entry(name, S_IFDIR | perm, 2, (0, 0), &[]);
    }

    /// A regular file.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, S_IFREG | perm, 1, (0, 0), data);
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes());
    }

    /// The archive so far, without a trailer (to build malformed archives in tests).
    pub fn bytes(&self) -> &[u8] {
        &self.out
    }

    /// Appends the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry(TRAILER, 0, 1, (0, 0), &[]);
        self.out
    }
}
