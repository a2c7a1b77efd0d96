//! The initramfs: a cpio archive read in place, read-only. Mounting checks the whole archive
//! and builds an index (a node per entry, each directory's entries sorted by name); the data
//! stays where the boot loader put it, and reads copy out of it. Nothing is locked after the
//! index is built.
//!
//! Archive rules, as Linux's unpacker has them: names may start with `/` or `./`; parents
//! missing from the archive are made as directories; a later entry of the same name
//! replaces an earlier one (a directory keeps its entries); hard links (`nlink` > 1, the
//! same `ino`) share the data the archive stores with one of them. Refused, with the entry
//! named: a malformed archive ([`crate::cpio::Why`]), a name with `..`, over the limits of
//! [`crate::path`], under something that is not a directory, or a non-directory replacing
//! a directory that has entries.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use crate::cpio::{self, CpioError, Reader, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use crate::node::{ErrorKind, FileSystem, FileType, Metadata, NodeId, Usage};
use crate::path::{self, MAX_DEPTH};

/// Why an archive cannot be mounted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpioFsError {
    /// The archive itself is malformed.
    Archive(CpioError),
    /// An entry's name or place is refused: the entry's offset, its name (cut), and why.
    Entry {
        /// Offset of the entry's header.
        offset: usize,
        /// Its name, cut at 128 bytes.
        name: String,
        /// Why.
        why: &'static str,
    },
    /// The kernel heap could not hold the index.
    OutOfMemory,
}

impl fmt::Display for CpioFsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpioFsError::Archive(e) => e.fmt(f),
            CpioFsError::Entry { offset, name, why } => {
                write!(f, "cpio entry at byte {offset} ({name:?}): {why}")
            }
            CpioFsError::OutOfMemory => f.write_str("out of heap for the archive's index"),
        }
    }
}

#[derive(Debug)]
enum Kind {
    File(Range<usize>),
    Dir(Vec<(Box<str>, u32)>),
    Symlink(Range<usize>),
    Other,
}

#[derive(Debug)]
struct Node {
    kind: Kind,
    mode: u32,
    mtime: u32,
    ino: u32,
    nlink: u32,
}

/// A read-only file system over a cpio archive in memory.
#[derive(Debug)]
pub struct CpioFs<'a> {
    data: &'a [u8],
    nodes: Vec<Node>,
    files_bytes: u64,
}

fn cut(name: &str) -> String {
    let mut end = name.len().min(128);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    String::from(&name[..end])
}

/// Offset of `part` inside `whole` (a subslice of it).
fn range_in(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    start..start + part.len()
}

impl<'a> CpioFs<'a> {
    /// Checks `data` and indexes it. (Mounted, it must be `'static`: the boot loader's
    /// memory, reserved for good.)
    pub fn new(data: &'a [u8]) -> Result<Self, CpioFsError> {
        let mut fs = Self {
            data,
            nodes: Vec::new(),
            files_bytes: 0,
        };
        fs.push(Node {
            kind: Kind::Dir(Vec::new()),
            mode: S_IFDIR | 0o755,
            mtime: 0,
            ino: 0,
            nlink: 2,
        })?;
        // While building, each directory's entries in a map (sorted, fast to insert).
        let mut dirs: BTreeMap<u32, BTreeMap<Box<str>, u32>> = BTreeMap::new();
        dirs.insert(0, BTreeMap::new());
        for entry in Reader::new(data) {
            let e = entry.map_err(CpioFsError::Archive)?;
            fs.add(&mut dirs, &e)?;
        }
        for (dir, entries) in dirs {
            let list: Vec<(Box<str>, u32)> = entries.into_iter().collect();
            fs.nodes[dir as usize].kind = Kind::Dir(list);
        }
        fs.link_hard_links();
        fs.files_bytes = fs
            .nodes
            .iter()
            .map(|n| match &n.kind {
                Kind::File(r) => r.len() as u64,
                _ => 0,
            })
            .sum();
        Ok(fs)
    }

    fn push(&mut self, node: Node) -> Result<u32, CpioFsError> {
        self.nodes
            .try_reserve(1)
            .map_err(|_| CpioFsError::OutOfMemory)?;
        self.nodes.push(node);
        Ok((self.nodes.len() - 1) as u32)
    }

    fn add(
        &mut self,
        dirs: &mut BTreeMap<u32, BTreeMap<Box<str>, u32>>,
        e: &cpio::Entry<'a>,
    ) -> Result<(), CpioFsError> {
        let refuse = |why| CpioFsError::Entry {
            offset: e.offset,
            name: cut(e.name),
            why,
        };
        let parts: Vec<&str> = path::components(e.name).collect();
        if parts.len() > MAX_DEPTH {
            return Err(refuse("more directories deep than the limit (64)"));
        }
        let kind = match e.mode & S_IFMT {
            S_IFREG => Kind::File(range_in(self.data, e.data)),
            S_IFDIR => Kind::Dir(Vec::new()),
            S_IFLNK => {
                if core::str::from_utf8(e.data).is_err() {
                    return Err(refuse("a symbolic link whose target is not UTF-8"));
                }
                Kind::Symlink(range_in(self.data, e.data))
            }
            _ => Kind::Other,
        };
        let node = Node {
            kind,
            mode: e.mode,
            mtime: e.mtime,
            ino: e.ino,
            nlink: e.nlink,
        };
        let Some((last, parents)) = parts.split_last() else {
            // `.` or `/`: the root's own attributes.
            if !matches!(node.kind, Kind::Dir(_)) {
                return Err(refuse("the root must be a directory"));
            }
            self.nodes[0].mode = node.mode;
            self.nodes[0].mtime = node.mtime;
            return Ok(());
        };
        let mut dir = 0u32;
        for p in parents {
            path::check_name(p).map_err(|_| refuse("a name with `..` or over 255 bytes"))?;
            let existing = dirs.get(&dir).and_then(|d| d.get(*p)).copied();
            dir = match existing {
                Some(n) if dirs.contains_key(&n) => n,
                Some(_) => return Err(refuse("under something that is not a directory")),
                None => {
                    let n = self.push(Node {
                        kind: Kind::Dir(Vec::new()),
                        mode: S_IFDIR | 0o755,
                        mtime: 0,
                        ino: 0,
                        nlink: 2,
                    })?;
                    dirs.insert(n, BTreeMap::new());
                    dirs.get_mut(&dir)
                        .expect("the parent is a directory")
                        .insert((*p).into(), n);
                    n
                }
            };
        }
        path::check_name(last).map_err(|_| refuse("a name with `..` or over 255 bytes"))?;
        let is_dir = matches!(node.kind, Kind::Dir(_));
        let existing = dirs.get(&dir).and_then(|d| d.get(*last)).copied();
        match existing {
            Some(n) if dirs.contains_key(&n) => {
                if is_dir {
                    // A directory again: new attributes, same entries.
                    self.nodes[n as usize].mode = node.mode;
                    self.nodes[n as usize].mtime = node.mtime;
                } else if dirs.get(&n).is_some_and(|d| !d.is_empty()) {
                    return Err(refuse("replaces a directory that has entries"));
                } else {
                    dirs.remove(&n);
                    self.nodes[n as usize] = node;
                }
            }
            Some(n) => {
                if is_dir {
                    dirs.insert(n, BTreeMap::new());
                }
                self.nodes[n as usize] = node;
            }
            None => {
                let n = self.push(node)?;
                if is_dir {
                    dirs.insert(n, BTreeMap::new());
                }
                dirs.get_mut(&dir)
                    .expect("the parent is a directory")
                    .insert((*last).into(), n);
            }
        }
        Ok(())
    }

    /// Hard links: GNU cpio stores the data with one of the names (the last); the others
    /// have none. Each empty one takes the data of a same-`ino` link that has some.
    fn link_hard_links(&mut self) {
        let mut with_data: BTreeMap<u32, Range<usize>> = BTreeMap::new();
        for n in &self.nodes {
            if let Kind::File(r) = &n.kind
                && n.nlink > 1
                && n.ino != 0
                && r.start != r.end
            {
                with_data.insert(n.ino, r.clone());
            }
        }
        for n in &mut self.nodes {
            if let Kind::File(r) = &mut n.kind
                && n.nlink > 1
                && r.start == r.end
                && let Some(d) = with_data.get(&n.ino)
            {
                *r = d.clone();
            }
        }
    }

    fn node(&self, id: NodeId) -> Result<&Node, ErrorKind> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.nodes.get(i))
            .ok_or(ErrorKind::Stale)
    }

    /// Number of nodes (the root included).
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Bytes of file data.
    pub fn file_bytes(&self) -> u64 {
        self.files_bytes
    }
}

fn file_type(k: &Kind) -> FileType {
    match k {
        Kind::File(_) => FileType::File,
        Kind::Dir(_) => FileType::Dir,
        Kind::Symlink(_) => FileType::Symlink,
        Kind::Other => FileType::Other,
    }
}

impl FileSystem for CpioFs<'_> {
    fn kind(&self) -> &'static str {
        "initramfs"
    }

    fn root(&self) -> NodeId {
        0
    }

    fn lookup(&self, dir: NodeId, name: &str) -> Result<NodeId, ErrorKind> {
        match &self.node(dir)?.kind {
            Kind::Dir(entries) => entries
                .binary_search_by(|(n, _)| (**n).cmp(name))
                .map(|i| u64::from(entries[i].1))
                .map_err(|_| ErrorKind::NotFound),
            _ => Err(ErrorKind::NotADirectory),
        }
    }

    fn release(&self, _node: NodeId) {}

    fn metadata(&self, node: NodeId) -> Result<Metadata, ErrorKind> {
        let n = self.node(node)?;
        let len = match &n.kind {
            Kind::File(r) | Kind::Symlink(r) => r.len() as u64,
            Kind::Dir(e) => e.len() as u64,
            Kind::Other => 0,
        };
        Ok(Metadata {
            kind: file_type(&n.kind),
            len,
            perm: n.mode & 0o7777,
            ino: node,
            modified: Some(u64::from(n.mtime)),
        })
    }

    fn read(&self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        match &self.node(node)?.kind {
            Kind::File(r) => {
                let data = &self.data[r.clone()];
                let Ok(at) = usize::try_from(offset) else {
                    return Ok(0);
                };
                let Some(rest) = data.get(at..) else {
                    return Ok(0);
                };
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                Ok(n)
            }
            Kind::Dir(_) => Err(ErrorKind::IsADirectory),
            _ => Err(ErrorKind::Unsupported),
        }
    }

    fn read_link(&self, node: NodeId) -> Result<String, ErrorKind> {
        match &self.node(node)?.kind {
            Kind::Symlink(r) => core::str::from_utf8(&self.data[r.clone()])
                .map(String::from)
                .map_err(|_| ErrorKind::InvalidArgument("link target not UTF-8")),
            _ => Err(ErrorKind::InvalidArgument("not a symbolic link")),
        }
    }

    fn read_dir(
        &self,
        dir: NodeId,
        from: usize,
        each: &mut dyn FnMut(usize, &str, FileType) -> bool,
    ) -> Result<(), ErrorKind> {
        let Kind::Dir(entries) = &self.node(dir)?.kind else {
            return Err(ErrorKind::NotADirectory);
        };
        for (i, (name, n)) in entries.iter().enumerate().skip(from) {
            if !each(i, name, file_type(&self.nodes[*n as usize].kind)) {
                break;
            }
        }
        Ok(())
    }

    fn usage(&self) -> Usage {
        Usage {
            used: self.data.len() as u64,
            limit: Some(self.data.len() as u64),
            nodes: self.nodes.len() as u64,
        }
    }
}
