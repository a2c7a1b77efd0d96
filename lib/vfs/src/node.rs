//! The file-system contract ([`FileSystem`]) and what it speaks in: node handles, kinds,
//! metadata, and the reasons an operation fails ([`ErrorKind`]).

use alloc::string::String;
use core::fmt;

/// A file system's handle of one of its nodes. Every handle a file system gives out
/// ([`FileSystem::lookup`], [`FileSystem::create`]) is given back exactly once
/// ([`FileSystem::release`]); the root's handle is never released.
pub type NodeId = u64;

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A device node, FIFO or socket (an initramfs may carry them; they cannot be opened).
    Other,
}

/// What a node is and holds, in the shape of `std::fs::Metadata`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// Its kind.
    pub kind: FileType,
    /// Bytes of data (a symbolic link's: its target's length; a directory: its entries).
    pub len: u64,
    /// Permission bits (`0o755`); informational: Rhea has one user.
    pub perm: u32,
    /// The file system's number for the node.
    pub ino: u64,
    /// Last modification, seconds since 1970, where the file system keeps it.
    pub modified: Option<u64>,
}

impl Metadata {
    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == FileType::Dir
    }
    /// Whether it is a regular file.
    pub fn is_file(&self) -> bool {
        self.kind == FileType::File
    }
    /// Whether it is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.kind == FileType::Symlink
    }
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A node to create.
#[derive(Clone, Copy, Debug)]
pub enum NewNode<'a> {
    /// An empty regular file.
    File {
        /// Permission bits.
        perm: u32,
    },
    /// An empty directory.
    Dir {
        /// Permission bits.
        perm: u32,
    },
    /// A symbolic link.
    Symlink {
        /// What it points to (not checked: a link may dangle).
        target: &'a str,
    },
}

/// How full a file system is, for `df`-style reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Bytes in use (data and bookkeeping, as the file system counts them).
    pub used: u64,
    /// The most it may hold (`None`: bounded only by what backs it).
    pub limit: Option<u64>,
    /// Nodes in use.
    pub nodes: u64,
}

/// Why an operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such file or directory.
    NotFound,
    /// A component that must be a directory is not.
    NotADirectory,
    /// A directory where a file was wanted.
    IsADirectory,
    /// The name exists already.
    AlreadyExists,
    /// The directory is not empty.
    DirectoryNotEmpty,
    /// The file system is read-only.
    ReadOnly,
    /// The file system is full (its size limit).
    NoSpace,
    /// The kernel heap could not give the memory.
    OutOfMemory,
    /// A name or path that is not allowed: the reason.
    InvalidName(&'static str),
    /// A name longer than [`crate::path::MAX_NAME`] bytes.
    NameTooLong,
    /// A path longer than [`crate::path::MAX_PATH`] bytes.
    PathTooLong,
    /// A path deeper than [`crate::path::MAX_DEPTH`] directories.
    TooDeep,
    /// More than [`crate::path::MAX_SYMLINKS`] symbolic links followed (a loop?).
    TooManyLinks,
    /// A rename from one mounted file system to another.
    CrossesMounts,
    /// A mount point (or the root) cannot be removed or renamed, or a file system with open
    /// files unmounted.
    Busy,
    /// A directory cannot move into itself.
    IntoItself,
    /// The handle names a node that is gone.
    Stale,
    /// The file was not opened for this (reading, writing).
    BadMode(&'static str),
    /// An argument out of range: which.
    InvalidArgument(&'static str),
    /// The node cannot be opened or read this way (a device node, a FIFO).
    Unsupported,
    /// The file system's transport failed: how.
    Io(&'static str),
    /// Called with interrupts disabled (an interrupt handler, a spin lock held): file
    /// operations may block.
    AtomicContext,
}

impl ErrorKind {
    /// The kind a Linux `errno` means (a 9P2000.L `Rlerror`, LinuxU's host calls).
    pub fn from_errno(errno: u32) -> ErrorKind {
        match errno {
            2 => ErrorKind::NotFound,
            17 => ErrorKind::AlreadyExists,
            20 => ErrorKind::NotADirectory,
            21 => ErrorKind::IsADirectory,
            39 => ErrorKind::DirectoryNotEmpty,
            30 => ErrorKind::ReadOnly,
            28 | 122 => ErrorKind::NoSpace,
            1 | 13 => ErrorKind::Io("refused (permission denied)"),
            36 => ErrorKind::NameTooLong,
            40 => ErrorKind::TooManyLinks,
            18 => ErrorKind::CrossesMounts,
            16 => ErrorKind::Busy,
            22 => ErrorKind::InvalidArgument("refused by the server"),
            12 => ErrorKind::OutOfMemory,
            95 | 38 => ErrorKind::Unsupported,
            _ => ErrorKind::Io("an error the server named by number"),
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::NotFound => f.write_str("no such file or directory"),
            ErrorKind::NotADirectory => f.write_str("not a directory"),
            ErrorKind::IsADirectory => f.write_str("is a directory"),
            ErrorKind::AlreadyExists => f.write_str("exists already"),
            ErrorKind::DirectoryNotEmpty => f.write_str("directory not empty"),
            ErrorKind::ReadOnly => f.write_str("read-only file system"),
            ErrorKind::NoSpace => f.write_str("no space left (the file system's size limit)"),
            ErrorKind::OutOfMemory => f.write_str("out of kernel heap"),
            ErrorKind::InvalidName(why) => write!(f, "invalid name: {why}"),
            ErrorKind::NameTooLong => write!(f, "a name over {} bytes", crate::path::MAX_NAME),
            ErrorKind::PathTooLong => write!(f, "a path over {} bytes", crate::path::MAX_PATH),
            ErrorKind::TooDeep => {
                write!(f, "more than {} directories deep", crate::path::MAX_DEPTH)
            }
            ErrorKind::TooManyLinks => write!(
                f,
                "more than {} symbolic links followed (a loop?)",
                crate::path::MAX_SYMLINKS
            ),
            ErrorKind::CrossesMounts => f.write_str("a rename across file systems"),
            ErrorKind::Busy => f.write_str("busy (a mount point, or files open)"),
            ErrorKind::IntoItself => f.write_str("a directory cannot move into itself"),
            ErrorKind::Stale => f.write_str("the file is gone"),
            ErrorKind::BadMode(why) => write!(f, "not opened for {why}"),
            ErrorKind::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            ErrorKind::Unsupported => f.write_str("not supported on this node"),
            ErrorKind::Io(why) => write!(f, "I/O error: {why}"),
            ErrorKind::AtomicContext => {
                f.write_str("file operations may block: not with interrupts disabled")
            }
        }
    }
}

/// An operation's failure: why, and on which path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// Why.
    pub kind: ErrorKind,
    /// The path as the caller gave it (cut at 256 bytes).
    pub path: String,
}

impl Error {
    /// `kind` on `path` (cut at 256 bytes, on a character boundary).
    pub fn new(kind: ErrorKind, path: &str) -> Self {
        let mut end = path.len().min(256);
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            kind,
            path: String::from(&path[..end]),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.path, self.kind)
    }
}

impl embedded_io::Error for Error {
    fn kind(&self) -> embedded_io::ErrorKind {
        use embedded_io::ErrorKind as E;
        match self.kind {
            ErrorKind::NotFound | ErrorKind::Stale => E::NotFound,
            ErrorKind::AlreadyExists => E::AlreadyExists,
            ErrorKind::ReadOnly | ErrorKind::BadMode(_) | ErrorKind::AtomicContext => {
                E::PermissionDenied
            }
            ErrorKind::NoSpace | ErrorKind::OutOfMemory => E::OutOfMemory,
            ErrorKind::InvalidName(_)
            | ErrorKind::NameTooLong
            | ErrorKind::PathTooLong
            | ErrorKind::TooDeep
            | ErrorKind::InvalidArgument(_) => E::InvalidInput,
            ErrorKind::Unsupported => E::Unsupported,
            _ => E::Other,
        }
    }
}

/// A mounted file system. Implementations lock what they share themselves (every method
/// takes `&self` and may be called from several threads at once) and check every handle
/// (a stale or foreign one is an error, never a panic).
pub trait FileSystem: Send + Sync {
    /// Its type, for `mount` listings (`initramfs`, `tmpfs`, `9p`).
    fn kind(&self) -> &'static str;
    /// The root directory's handle (never released).
    fn root(&self) -> NodeId;
    /// The entry `name` of directory `dir` (a handle to release).
    fn lookup(&self, dir: NodeId, name: &str) -> Result<NodeId, ErrorKind>;
    /// Gives a handle back.
    fn release(&self, node: NodeId);
    /// What `node` is.
    fn metadata(&self, node: NodeId) -> Result<Metadata, ErrorKind>;
    /// Reads from `offset` into `buf`; 0 at or past the end.
    fn read(&self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize, ErrorKind>;
    /// The target of symbolic link `node`.
    fn read_link(&self, node: NodeId) -> Result<String, ErrorKind>;
    /// Calls `each(index, name, kind)` for the entries of `dir` from index `from` on, until
    /// it returns `false`.
    fn read_dir(
        &self,
        dir: NodeId,
        from: usize,
        each: &mut dyn FnMut(usize, &str, FileType) -> bool,
    ) -> Result<(), ErrorKind>;
    /// How full it is.
    fn usage(&self) -> Usage;

    /// Writes `buf` at `offset`; returns how much was written (all of it, or an error).
    fn write(&self, node: NodeId, offset: u64, buf: &[u8]) -> Result<usize, ErrorKind> {
        let _ = (node, offset, buf);
        Err(ErrorKind::ReadOnly)
    }
    /// Cuts or extends (with zeros) regular file `node` to `len` bytes.
    fn set_len(&self, node: NodeId, len: u64) -> Result<(), ErrorKind> {
        let _ = (node, len);
        Err(ErrorKind::ReadOnly)
    }
    /// Creates `name` in `dir` (a handle to release); [`ErrorKind::AlreadyExists`] if it is
    /// there.
    fn create(&self, dir: NodeId, name: &str, new: NewNode<'_>) -> Result<NodeId, ErrorKind> {
        let _ = (dir, name, new);
        Err(ErrorKind::ReadOnly)
    }
    /// Removes `name` from `dir`: a directory only if `is_dir` and empty, anything else only
    /// if not `is_dir`. A file still open stays readable until its last handle is released.
    fn remove(&self, dir: NodeId, name: &str, is_dir: bool) -> Result<(), ErrorKind> {
        let _ = (dir, name, is_dir);
        Err(ErrorKind::ReadOnly)
    }
    /// Moves `from_dir/from` to `to_dir/to`, replacing a file there (or an empty directory
    /// by a directory).
    fn rename(
        &self,
        from_dir: NodeId,
        from: &str,
        to_dir: NodeId,
        to: &str,
    ) -> Result<(), ErrorKind> {
        let _ = (from_dir, from, to_dir, to);
        Err(ErrorKind::ReadOnly)
    }
}
