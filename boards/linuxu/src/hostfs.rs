//! A host directory as a Rhea file system (`rhea.fs.host=/host/dir:/mnt`), through raw system
//! calls (`rhea_arch::sys::files`), never libc.
//!
//! **Handles are host descriptors.** A lookup opens the entry relative to its directory's
//! descriptor with `O_NOFOLLOW` — a directory for reading, a file for reading and writing
//! (read-only if the host refuses writing), anything else as an `O_PATH` handle — and a
//! release closes it. The VFS never passes a name with `/` or `..`, and the host never follows
//! a link for Rhea (links are read and resolved by the VFS in Rhea's own namespace), so
//! nothing outside the shared directory can be reached. The descriptors this file system
//! opened are kept in a set: any other number is refused as stale.
//!
//! **Blocking**: a call blocks the vCPU it runs on (other vCPUs go on). Local files answer in
//! microseconds; a share on a slow network file system would stall that vCPU.

use alloc::collections::BTreeSet;
use alloc::string::String;
use rhea_arch::sync::SpinLock;
use rhea_arch::sys::files::{self as f, AT_EMPTY_PATH, AT_REMOVEDIR, AT_SYMLINK_NOFOLLOW};
use rhea_vfs::{ErrorKind, FileSystem, FileType, Metadata, NewNode, NodeId, Usage};

const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

/// A host directory.
#[derive(Debug)]
pub(crate) struct HostFs {
    root: i32,
    /// Descriptors this file system opened and has not closed (root included). Interrupt
    /// handlers never touch it; held for one set operation.
    open: SpinLock<BTreeSet<i32>>,
}

fn errno(r: isize) -> ErrorKind {
    ErrorKind::from_errno(u32::try_from(-r).unwrap_or(0))
}

fn check(r: isize) -> Result<usize, ErrorKind> {
    if r < 0 { Err(errno(r)) } else { Ok(r as usize) }
}

fn stat_of(st: &[u8; 144]) -> (u32, u64, u64, u64) {
    let u64_at = |o: usize| u64::from_le_bytes(st[o..o + 8].try_into().expect("8 bytes"));
    let mode = u32::from_le_bytes(st[24..28].try_into().expect("4 bytes"));
    (mode, u64_at(8), u64_at(48), u64_at(88))
}

fn kind_of(mode: u32) -> FileType {
    match mode & S_IFMT {
        S_IFREG => FileType::File,
        S_IFDIR => FileType::Dir,
        S_IFLNK => FileType::Symlink,
        _ => FileType::Other,
    }
}

impl HostFs {
    /// Opens the host directory `path`; why not, as the host's errno.
    pub(crate) fn new(path: &str) -> Result<Self, isize> {
        const AT_FDCWD: i32 = -100;
        let fd = f::open_at(
            AT_FDCWD,
            path,
            f::O_RDONLY | f::O_DIRECTORY | f::O_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(fd);
        }
        let fd = fd as i32;
        let mut open = BTreeSet::new();
        open.insert(fd);
        Ok(Self {
            root: fd,
            open: SpinLock::new(open),
        })
    }

    fn fd(&self, node: NodeId) -> Result<i32, ErrorKind> {
        let fd = i32::try_from(node).map_err(|_| ErrorKind::Stale)?;
        if self.open.lock().contains(&fd) {
            Ok(fd)
        } else {
            Err(ErrorKind::Stale)
        }
    }

    fn keep(&self, fd: isize) -> Result<NodeId, ErrorKind> {
        let fd = check(fd)? as i32;
        self.open.lock().insert(fd);
        Ok(fd as NodeId)
    }

    /// Opens `name` in `dir` as a handle of the right kind (see the module documentation).
    fn open_entry(&self, dir: i32, name: &str) -> Result<NodeId, ErrorKind> {
        let mut st = [0u8; 144];
        check(f::stat_at(dir, name, AT_SYMLINK_NOFOLLOW, &mut st))?;
        let base = f::O_NOFOLLOW | f::O_CLOEXEC;
        let fd = match stat_of(&st).0 & S_IFMT {
            S_IFDIR => f::open_at(dir, name, base | f::O_RDONLY | f::O_DIRECTORY, 0),
            S_IFREG => match f::open_at(dir, name, base | f::O_RDWR, 0) {
                -13 | -30 => f::open_at(dir, name, base | f::O_RDONLY, 0),
                fd => fd,
            },
            _ => f::open_at(dir, name, base | f::O_PATH, 0),
        };
        self.keep(fd)
    }
}

impl FileSystem for HostFs {
    fn kind(&self) -> &'static str {
        "hostfs"
    }

    fn root(&self) -> NodeId {
        self.root as NodeId
    }

    fn lookup(&self, dir: NodeId, name: &str) -> Result<NodeId, ErrorKind> {
        let d = self.fd(dir)?;
        self.open_entry(d, name)
    }

    fn release(&self, node: NodeId) {
        let Ok(fd) = self.fd(node) else { return };
        if fd == self.root {
            return;
        }
        self.open.lock().remove(&fd);
        f::close(fd);
    }

    fn metadata(&self, node: NodeId) -> Result<Metadata, ErrorKind> {
        let fd = self.fd(node)?;
        let mut st = [0u8; 144];
        check(f::stat_at(fd, "", AT_EMPTY_PATH, &mut st))?;
        let (mode, ino, size, mtime) = stat_of(&st);
        Ok(Metadata {
            kind: kind_of(mode),
            len: size,
            perm: mode & 0o7777,
            ino,
            modified: Some(mtime),
        })
    }

    fn read(&self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let fd = self.fd(node)?;
        if offset > i64::MAX as u64 {
            return Ok(0);
        }
        check(f::pread(fd, buf, offset))
    }

    fn read_link(&self, node: NodeId) -> Result<String, ErrorKind> {
        let fd = self.fd(node)?;
        let mut buf = [0u8; 4096];
        let n = check(f::read_link(fd, &mut buf))?;
        core::str::from_utf8(&buf[..n])
            .map(String::from)
            .map_err(|_| ErrorKind::InvalidArgument("a link target that is not UTF-8"))
    }

    fn read_dir(
        &self,
        dir: NodeId,
        from: usize,
        each: &mut dyn FnMut(usize, &str, FileType) -> bool,
    ) -> Result<(), ErrorKind> {
        let fd = self.fd(dir)?;
        check(f::rewind(fd))?;
        let mut buf = [0u8; 2048];
        let mut index = 0;
        loop {
            let n = check(f::getdents(fd, &mut buf))?;
            if n == 0 {
                return Ok(());
            }
            // linux_dirent64: ino u64, off i64, reclen u16, type u8, name NUL-terminated.
            let mut at = 0;
            while at + 19 < n {
                let reclen = usize::from(u16::from_le_bytes([buf[at + 16], buf[at + 17]]));
                if reclen < 20 || at + reclen > n {
                    return Err(ErrorKind::Io("a malformed directory record from the host"));
                }
                let kind = match buf[at + 18] {
                    4 => FileType::Dir,
                    8 => FileType::File,
                    10 => FileType::Symlink,
                    _ => FileType::Other,
                };
                let raw = &buf[at + 19..at + reclen];
                let name = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
                at += reclen;
                let Ok(name) = core::str::from_utf8(name) else {
                    // A host name Rhea cannot spell is left out of listings.
                    continue;
                };
                if name == "." || name == ".." {
                    continue;
                }
                if index >= from && !each(index, name, kind) {
                    return Ok(());
                }
                index += 1;
            }
        }
    }

    fn usage(&self) -> Usage {
        Usage {
            used: 0,
            limit: None,
            nodes: self.open.lock().len() as u64,
        }
    }

    fn write(&self, node: NodeId, offset: u64, buf: &[u8]) -> Result<usize, ErrorKind> {
        let fd = self.fd(node)?;
        let mut done = 0;
        while done < buf.len() {
            let n = check(f::pwrite(fd, &buf[done..], offset + done as u64))?;
            if n == 0 {
                return Err(ErrorKind::NoSpace);
            }
            done += n;
        }
        Ok(done)
    }

    fn set_len(&self, node: NodeId, len: u64) -> Result<(), ErrorKind> {
        let fd = self.fd(node)?;
        check(f::ftruncate(fd, len)).map(drop)
    }

    fn create(&self, dir: NodeId, name: &str, new: NewNode<'_>) -> Result<NodeId, ErrorKind> {
        rhea_vfs::path::check_name(name)?;
        let d = self.fd(dir)?;
        match new {
            NewNode::File { perm } => {
                let flags = f::O_CREAT | f::O_EXCL | f::O_RDWR | f::O_NOFOLLOW | f::O_CLOEXEC;
                self.keep(f::open_at(d, name, flags, perm & 0o7777))
            }
            NewNode::Dir { perm } => {
                check(f::mkdir_at(d, name, perm & 0o7777))?;
                self.open_entry(d, name)
            }
            NewNode::Symlink { target } => {
                check(f::symlink_at(target, d, name))?;
                self.open_entry(d, name)
            }
        }
    }

    fn remove(&self, dir: NodeId, name: &str, is_dir: bool) -> Result<(), ErrorKind> {
        let d = self.fd(dir)?;
        check(f::unlink_at(d, name, if is_dir { AT_REMOVEDIR } else { 0 })).map(drop)
    }

    fn rename(
        &self,
        from_dir: NodeId,
        from: &str,
        to_dir: NodeId,
        to: &str,
    ) -> Result<(), ErrorKind> {
        rhea_vfs::path::check_name(to)?;
        let (fd, td) = (self.fd(from_dir)?, self.fd(to_dir)?);
        check(f::rename_at(fd, from, td, to)).map(drop)
    }
}
