//! The mount table and path resolution, and open files — in the shape of `std::fs`.
//!
//! **Mounts** are kept by path; a mount point need not exist in the file system below it
//! (it shows in its parent's listing all the same), and cannot be removed or renamed.
//! Mounting happens at boot and rarely after: resolution takes the table's lock only to
//! find a mount, never across a file system's operation.
//!
//! **Resolution** walks one component at a time from `/` (no current directory: a relative
//! path starts at `/`), follows symbolic links (at most [`MAX_SYMLINKS`] per call; a link's
//! absolute target starts again at `/`, a relative one at the link's directory), takes `..`
//! on the resolved path (so `..` out of a mount returns to the directory above the mount
//! point, and never above `/`), and refuses paths past [`MAX_PATH`] or deeper than
//! [`MAX_DEPTH`]. Every error names the path as the caller gave it.
//!
//! **Handles** from a file system are released on every path ([`Held`]); an open [`File`]
//! keeps its node's handle (a removed file stays usable while open) and an `Arc` of its file
//! system (an unmount with files open is refused).

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use lock_api::{Mutex, RawMutex};

use crate::node::{Error, ErrorKind, FileSystem, FileType, Metadata, NewNode, NodeId, Usage};
use crate::path::{self, MAX_DEPTH, MAX_PATH, MAX_SYMLINKS};

struct Mount {
    /// The mount point's components (empty: `/`).
    at: Vec<String>,
    fs: Arc<dyn FileSystem>,
}

/// One mount, as [`Vfs::mounts`] lists it.
#[derive(Clone, Debug)]
pub struct MountInfo {
    /// Where.
    pub at: String,
    /// The file system's kind.
    pub kind: &'static str,
    /// How full.
    pub usage: Usage,
}

/// The mount table, locked by `R`.
pub struct Vfs<R: RawMutex> {
    mounts: Mutex<R, Vec<Mount>>,
}

impl<R: RawMutex> core::fmt::Debug for Vfs<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Vfs { .. }")
    }
}

/// A file system's handle, given back when dropped.
struct Held {
    fs: Arc<dyn FileSystem>,
    node: NodeId,
}

impl Held {
    fn root(fs: Arc<dyn FileSystem>) -> Held {
        let node = fs.root();
        Held { fs, node }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.node != self.fs.root() {
            self.fs.release(self.node);
        }
    }
}

/// Where a walk ended: the parent directory and the last name (`None` for `/` or a mount
/// root), and the node itself if it exists.
struct Found {
    parent: Option<(Held, String)>,
    node: Option<Held>,
    /// The resolved path's components: the node's when it exists, else its directory's.
    at: Vec<String>,
}

/// How to open a file, as `std::fs::OpenOptions`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
}

impl OpenOptions {
    /// Nothing set.
    pub fn new() -> Self {
        Self::default()
    }
    /// Open for reading.
    pub fn read(&mut self, on: bool) -> &mut Self {
        self.read = on;
        self
    }
    /// Open for writing.
    pub fn write(&mut self, on: bool) -> &mut Self {
        self.write = on;
        self
    }
    /// Every write goes to the end.
    pub fn append(&mut self, on: bool) -> &mut Self {
        self.append = on;
        self
    }
    /// Cut to 0 bytes on opening (needs `write`).
    pub fn truncate(&mut self, on: bool) -> &mut Self {
        self.truncate = on;
        self
    }
    /// Create if missing (needs `write` or `append`).
    pub fn create(&mut self, on: bool) -> &mut Self {
        self.create = on;
        self
    }
    /// Create, and fail if it exists.
    pub fn create_new(&mut self, on: bool) -> &mut Self {
        self.create_new = on;
        self
    }
}

/// An open file: its node, its offset, what it was opened for.
pub struct File {
    held: Held,
    pos: u64,
    read: bool,
    write: bool,
    append: bool,
    path: String,
}

impl core::fmt::Debug for File {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("File")
            .field("path", &self.path)
            .field("pos", &self.pos)
            .finish()
    }
}

/// Where a seek counts from, as `std::io::SeekFrom`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeekFrom {
    /// From the start.
    Start(u64),
    /// From the end.
    End(i64),
    /// From the current offset.
    Current(i64),
}

impl File {
    fn err(&self, kind: ErrorKind) -> Error {
        Error::new(kind, &self.path)
    }

    /// Reads at the offset into `buf`, moving the offset; 0 at the end.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if !self.read {
            return Err(self.err(ErrorKind::BadMode("reading")));
        }
        let n = self
            .held
            .fs
            .read(self.held.node, self.pos, buf)
            .map_err(|k| self.err(k))?;
        self.pos += n as u64;
        Ok(n)
    }

    /// Fills `buf` or fails ([`ErrorKind::InvalidArgument`] at the end of the file).
    pub fn read_exact(&mut self, mut buf: &mut [u8]) -> Result<(), Error> {
        while !buf.is_empty() {
            match self.read(buf)? {
                0 => return Err(self.err(ErrorKind::InvalidArgument("end of file"))),
                n => buf = &mut buf[n..],
            }
        }
        Ok(())
    }

    /// Reads from the offset to the end, appending to `out`.
    pub fn read_to_end(&mut self, out: &mut Vec<u8>) -> Result<usize, Error> {
        let start = out.len();
        let len = self.metadata()?.len;
        let want = len.saturating_sub(self.pos) as usize;
        out.try_reserve(want)
            .map_err(|_| self.err(ErrorKind::OutOfMemory))?;
        // Straight into the vector for the length known now; then in pieces, if it grew.
        out.resize(start + want, 0);
        let mut filled = start;
        while filled < out.len() {
            match self.read(&mut out[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => {
                    out.truncate(filled);
                    return Err(e);
                }
            }
        }
        out.truncate(filled);
        let mut chunk = [0u8; 512];
        loop {
            let n = self.read(&mut chunk)?;
            if n == 0 {
                return Ok(out.len() - start);
            }
            out.try_reserve(n)
                .map_err(|_| self.err(ErrorKind::OutOfMemory))?;
            out.extend_from_slice(&chunk[..n]);
        }
    }

    /// Writes `buf` at the offset (the end, if opened to append), moving the offset.
    pub fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        if !self.write {
            return Err(self.err(ErrorKind::BadMode("writing")));
        }
        if self.append {
            self.pos = self.metadata()?.len;
        }
        let n = self
            .held
            .fs
            .write(self.held.node, self.pos, buf)
            .map_err(|k| self.err(k))?;
        self.pos += n as u64;
        Ok(n)
    }

    /// Writes all of `buf`.
    pub fn write_all(&mut self, mut buf: &[u8]) -> Result<(), Error> {
        while !buf.is_empty() {
            match self.write(buf)? {
                0 => return Err(self.err(ErrorKind::NoSpace)),
                n => buf = &buf[n..],
            }
        }
        Ok(())
    }

    /// Moves the offset; returns it.
    pub fn seek(&mut self, to: SeekFrom) -> Result<u64, Error> {
        let base = match to {
            SeekFrom::Start(n) => {
                self.pos = n;
                return Ok(n);
            }
            SeekFrom::End(d) => (self.metadata()?.len, d),
            SeekFrom::Current(d) => (self.pos, d),
        };
        self.pos = base
            .0
            .checked_add_signed(base.1)
            .ok_or_else(|| self.err(ErrorKind::InvalidArgument("seek before the start")))?;
        Ok(self.pos)
    }

    /// Cuts or extends the file.
    pub fn set_len(&self, len: u64) -> Result<(), Error> {
        if !self.write {
            return Err(self.err(ErrorKind::BadMode("writing")));
        }
        self.held
            .fs
            .set_len(self.held.node, len)
            .map_err(|k| self.err(k))
    }

    /// What the file is now.
    pub fn metadata(&self) -> Result<Metadata, Error> {
        self.held
            .fs
            .metadata(self.held.node)
            .map_err(|k| self.err(k))
    }

    /// The path it was opened by.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl embedded_io::ErrorType for File {
    type Error = Error;
}

impl embedded_io::Read for File {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        File::read(self, buf)
    }
}

impl embedded_io::Write for File {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        File::write(self, buf)
    }
    fn flush(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

impl embedded_io::Seek for File {
    fn seek(&mut self, pos: embedded_io::SeekFrom) -> Result<u64, Error> {
        File::seek(
            self,
            match pos {
                embedded_io::SeekFrom::Start(n) => SeekFrom::Start(n),
                embedded_io::SeekFrom::End(n) => SeekFrom::End(n),
                embedded_io::SeekFrom::Current(n) => SeekFrom::Current(n),
            },
        )
    }
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Its name.
    pub name: String,
    /// What it is (a mount point: [`FileType::Dir`]).
    pub kind: FileType,
}

fn join(at: &[String]) -> String {
    let mut s = String::new();
    for c in at {
        s.push('/');
        s.push_str(c);
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

impl<R: RawMutex> Default for Vfs<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R: RawMutex> Vfs<R> {
    /// An empty table: nothing resolves until something is mounted at `/`.
    pub const fn new() -> Self {
        Self {
            mounts: Mutex::const_new(R::INIT, Vec::new()),
        }
    }

    /// Mounts `fs` at `at` (an absolute path without `.` or `..`). Mounting over a mount
    /// point is [`ErrorKind::Busy`].
    pub fn mount(&self, at: &str, fs: Arc<dyn FileSystem>) -> Result<(), Error> {
        let e = |k| Error::new(k, at);
        path::check_path(at).map_err(e)?;
        if !at.starts_with('/') {
            return Err(e(ErrorKind::InvalidName("a mount point must be absolute")));
        }
        let mut parts = Vec::new();
        for c in path::components(at) {
            if c == ".." {
                return Err(e(ErrorKind::InvalidName("`..` in a mount point")));
            }
            path::check_name(c).map_err(e)?;
            parts.push(String::from(c));
        }
        if parts.len() > MAX_DEPTH {
            return Err(e(ErrorKind::TooDeep));
        }
        if let Some((_, parent)) = parts.split_last() {
            // The mount point's directory must exist (the point itself need not).
            if !self.meta(&join(parent), true)?.is_dir() {
                return Err(e(ErrorKind::NotADirectory));
            }
        }
        let mut m = self.mounts.lock();
        if m.iter().any(|x| x.at == parts) {
            return Err(e(ErrorKind::Busy));
        }
        m.try_reserve(1).map_err(|_| e(ErrorKind::OutOfMemory))?;
        m.push(Mount { at: parts, fs });
        Ok(())
    }

    /// Unmounts what is at `at`: [`ErrorKind::Busy`] while files of it are open or a mount
    /// lies below it.
    pub fn unmount(&self, at: &str) -> Result<(), Error> {
        let e = |k| Error::new(k, at);
        let parts: Vec<String> = path::components(at).map(String::from).collect();
        let mut m = self.mounts.lock();
        let i = m
            .iter()
            .position(|x| x.at == parts)
            .ok_or(e(ErrorKind::NotFound))?;
        let below = m
            .iter()
            .any(|x| x.at.len() > parts.len() && x.at.starts_with(&parts));
        if below || Arc::strong_count(&m[i].fs) > 1 {
            return Err(e(ErrorKind::Busy));
        }
        m.remove(i);
        Ok(())
    }

    /// Every mount, in mount order.
    pub fn mounts(&self) -> Vec<MountInfo> {
        let fs: Vec<(String, Arc<dyn FileSystem>)> = self
            .mounts
            .lock()
            .iter()
            .map(|m| (join(&m.at), m.fs.clone()))
            .collect();
        fs.into_iter()
            .map(|(at, fs)| MountInfo {
                at,
                kind: fs.kind(),
                usage: fs.usage(),
            })
            .collect()
    }

    /// The file system mounted exactly at `at`.
    fn mounted_at(&self, at: &[String]) -> Option<Arc<dyn FileSystem>> {
        self.mounts
            .lock()
            .iter()
            .find(|m| m.at == at)
            .map(|m| m.fs.clone())
    }

    /// The directory `at` names (resolved, symlink-free components), walked from the
    /// deepest mount above it.
    fn dir_at(&self, at: &[String]) -> Result<Held, ErrorKind> {
        let (depth, fs) = {
            let m = self.mounts.lock();
            m.iter()
                .filter(|x| at.starts_with(&x.at))
                .max_by_key(|x| x.at.len())
                .map(|x| (x.at.len(), x.fs.clone()))
                .ok_or(ErrorKind::NotFound)?
        };
        let mut cur = Held::root(fs);
        for c in &at[depth..] {
            let next = cur.fs.lookup(cur.node, c)?;
            cur = Held {
                fs: cur.fs.clone(),
                node: next,
            };
        }
        Ok(cur)
    }

    /// Walks `path`. `follow` says whether a symbolic link as the last component is
    /// followed. A missing last component is not an error (`node` is `None`); a missing
    /// directory before it is.
    fn walk(&self, path: &str, follow: bool) -> Result<Found, ErrorKind> {
        path::check_path(path)?;
        // The components still to walk, last first (a link's target is pushed on).
        let mut todo: Vec<String> = path::components(path).rev().map(String::from).collect();
        let mut at: Vec<String> = Vec::new();
        // The directory the walk is in, and what the last component named in it.
        let mut cur = self.dir_at(&at)?;
        let mut found: Option<Held> = None;
        // The name `found` has in `cur` (`None` for a mount's root).
        let mut last: Option<String> = None;
        let mut links = 0;
        while let Some(c) = todo.pop() {
            if let Some(f) = found.take() {
                // The previous component was not last: it must be a directory.
                if f.fs.metadata(f.node)?.kind != FileType::Dir {
                    return Err(ErrorKind::NotADirectory);
                }
                cur = f;
            }
            last = None;
            if c == ".." {
                at.pop();
                cur = self.dir_at(&at)?;
                continue;
            }
            path::check_name(&c)?;
            at.push(c);
            if at.len() > MAX_DEPTH {
                return Err(ErrorKind::TooDeep);
            }
            if let Some(fs) = self.mounted_at(&at) {
                found = Some(Held::root(fs));
                continue;
            }
            let name = at.last().expect("just pushed");
            let node = match cur.fs.lookup(cur.node, name) {
                Ok(n) => Held {
                    fs: cur.fs.clone(),
                    node: n,
                },
                Err(ErrorKind::NotFound) if todo.is_empty() => {
                    let name = at.pop().expect("just pushed");
                    return Ok(Found {
                        parent: Some((cur, name)),
                        node: None,
                        at,
                    });
                }
                Err(e) => return Err(e),
            };
            let meta = node.fs.metadata(node.node)?;
            if meta.kind == FileType::Symlink && (follow || !todo.is_empty()) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(ErrorKind::TooManyLinks);
                }
                let target = node.fs.read_link(node.node)?;
                path::check_path(&target)?;
                at.pop();
                if target.starts_with('/') {
                    at.clear();
                    cur = self.dir_at(&at)?;
                }
                todo.extend(path::components(&target).rev().map(String::from));
                if todo.iter().map(|s| s.len() + 1).sum::<usize>() > MAX_PATH {
                    return Err(ErrorKind::PathTooLong);
                }
                continue;
            }
            last = Some(name.clone());
            found = Some(node);
        }
        Ok(match found {
            Some(node) => Found {
                parent: last.map(|name| (cur, name)),
                node: Some(node),
                at,
            },
            None => Found {
                parent: None,
                node: Some(cur),
                at,
            },
        })
    }

    fn resolve(&self, path: &str, follow: bool) -> Result<Found, Error> {
        self.walk(path, follow).map_err(|k| Error::new(k, path))
    }

    /// Opens `path` as `opts` say.
    pub fn open(&self, path: &str, opts: &OpenOptions) -> Result<File, Error> {
        let e = |k| Error::new(k, path);
        let writes = opts.write || opts.append;
        if (opts.create || opts.create_new || opts.truncate) && !writes {
            return Err(e(ErrorKind::InvalidArgument(
                "create and truncate need write or append",
            )));
        }
        if !opts.read && !writes {
            return Err(e(ErrorKind::InvalidArgument(
                "open for neither reading nor writing",
            )));
        }
        let found = self.resolve(path, true)?;
        let held = match (found.node, found.parent) {
            (Some(_), _) if opts.create_new => return Err(e(ErrorKind::AlreadyExists)),
            (Some(n), _) => n,
            (None, Some((dir, name))) if opts.create || opts.create_new => {
                let node = dir
                    .fs
                    .create(dir.node, &name, NewNode::File { perm: 0o644 })
                    .map_err(e)?;
                Held {
                    fs: dir.fs.clone(),
                    node,
                }
            }
            (None, _) => return Err(e(ErrorKind::NotFound)),
        };
        match held.fs.metadata(held.node).map_err(e)?.kind {
            FileType::File => {}
            FileType::Dir => return Err(e(ErrorKind::IsADirectory)),
            _ => return Err(e(ErrorKind::Unsupported)),
        }
        if opts.truncate {
            held.fs.set_len(held.node, 0).map_err(e)?;
        }
        Ok(File {
            held,
            pos: 0,
            read: opts.read,
            write: writes,
            append: opts.append,
            path: String::from(path),
        })
    }

    /// Metadata of what `path` names, links followed.
    pub fn metadata(&self, path: &str) -> Result<Metadata, Error> {
        self.meta(path, true)
    }

    /// Metadata of what `path` names, a link as the last component not followed.
    pub fn symlink_metadata(&self, path: &str) -> Result<Metadata, Error> {
        self.meta(path, false)
    }

    fn meta(&self, path: &str, follow: bool) -> Result<Metadata, Error> {
        let f = self.resolve(path, follow)?;
        let n = f.node.ok_or(Error::new(ErrorKind::NotFound, path))?;
        n.fs.metadata(n.node).map_err(|k| Error::new(k, path))
    }

    /// The entries of directory `path`, sorted by name, mount points below it included.
    pub fn read_dir(&self, path: &str) -> Result<Vec<DirEntry>, Error> {
        let e = |k| Error::new(k, path);
        let f = self.resolve(path, true)?;
        let dir = f.node.ok_or(e(ErrorKind::NotFound))?;
        let mut out: Vec<DirEntry> = Vec::new();
        let mut failed = false;
        dir.fs
            .read_dir(dir.node, 0, &mut |_, name, kind| {
                if out.try_reserve(1).is_err() {
                    failed = true;
                    return false;
                }
                out.push(DirEntry {
                    name: String::from(name),
                    kind,
                });
                true
            })
            .map_err(e)?;
        if failed {
            return Err(e(ErrorKind::OutOfMemory));
        }
        for m in self.mounts.lock().iter() {
            if m.at.len() == f.at.len() + 1 && m.at.starts_with(&f.at) {
                let name = m.at.last().expect("longer than the directory");
                match out.iter_mut().find(|d| &d.name == name) {
                    Some(d) => d.kind = FileType::Dir,
                    None => out.push(DirEntry {
                        name: name.clone(),
                        kind: FileType::Dir,
                    }),
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Where the last component of `path` goes: its directory and name, and whether it is a
    /// mount point.
    fn parent_of(&self, path: &str) -> Result<(Held, String, Option<Held>), Error> {
        let e = |k| Error::new(k, path);
        let f = self.resolve(path, false)?;
        let Some((dir, name)) = f.parent else {
            // `/`, a mount's root, or a path ending in `..`.
            return Err(e(ErrorKind::Busy));
        };
        if f.node.is_some() {
            // A directory holding a mount point stays while it is mounted.
            // (`f.at` ends with the name when the node exists.)
            if self.mounts.lock().iter().any(|m| m.at.starts_with(&f.at)) {
                return Err(e(ErrorKind::Busy));
            }
        }
        Ok((dir, name, f.node))
    }

    /// Creates directory `path` (its parent must exist).
    pub fn create_dir(&self, path: &str) -> Result<(), Error> {
        let e = |k| Error::new(k, path);
        let (dir, name, existing) = self.parent_of(path)?;
        if existing.is_some() {
            return Err(e(ErrorKind::AlreadyExists));
        }
        let node = dir
            .fs
            .create(dir.node, &name, NewNode::Dir { perm: 0o755 })
            .map_err(e)?;
        dir.fs.release(node);
        Ok(())
    }

    /// Creates directory `path` and every missing parent.
    pub fn create_dir_all(&self, path: &str) -> Result<(), Error> {
        let mut prefix = String::new();
        for c in path::components(path) {
            prefix.push('/');
            prefix.push_str(c);
            match self.metadata(&prefix) {
                Ok(m) if m.is_dir() => continue,
                Ok(_) => return Err(Error::new(ErrorKind::NotADirectory, &prefix)),
                Err(err) if err.kind == ErrorKind::NotFound => self.create_dir(&prefix)?,
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Creates a symbolic link `path` pointing at `target`.
    pub fn symlink(&self, target: &str, path: &str) -> Result<(), Error> {
        let e = |k| Error::new(k, path);
        let (dir, name, existing) = self.parent_of(path)?;
        if existing.is_some() {
            return Err(e(ErrorKind::AlreadyExists));
        }
        let node = dir
            .fs
            .create(dir.node, &name, NewNode::Symlink { target })
            .map_err(e)?;
        dir.fs.release(node);
        Ok(())
    }

    /// The target of symbolic link `path`.
    pub fn read_link(&self, path: &str) -> Result<String, Error> {
        let e = |k| Error::new(k, path);
        let f = self.resolve(path, false)?;
        let n = f.node.ok_or(e(ErrorKind::NotFound))?;
        n.fs.read_link(n.node).map_err(e)
    }

    /// Removes file (or link) `path`.
    pub fn remove_file(&self, path: &str) -> Result<(), Error> {
        let (dir, name, _) = self.parent_of(path)?;
        dir.fs
            .remove(dir.node, &name, false)
            .map_err(|k| Error::new(k, path))
    }

    /// Removes empty directory `path`.
    pub fn remove_dir(&self, path: &str) -> Result<(), Error> {
        let (dir, name, _) = self.parent_of(path)?;
        dir.fs
            .remove(dir.node, &name, true)
            .map_err(|k| Error::new(k, path))
    }

    /// Moves `from` to `to` (within one file system), replacing a file at `to`.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), Error> {
        let (fdir, fname, fnode) = self.parent_of(from)?;
        if fnode.is_none() {
            return Err(Error::new(ErrorKind::NotFound, from));
        }
        let (tdir, tname, _) = self.parent_of(to)?;
        if !Arc::ptr_eq(&fdir.fs, &tdir.fs) {
            return Err(Error::new(ErrorKind::CrossesMounts, to));
        }
        fdir.fs
            .rename(fdir.node, &fname, tdir.node, &tname)
            .map_err(|k| Error::new(k, from))
    }

    /// The whole of file `path`.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, Error> {
        let mut f = self.open(path, OpenOptions::new().read(true))?;
        let mut out = Vec::new();
        f.read_to_end(&mut out)?;
        Ok(out)
    }

    /// Writes `data` as the whole of file `path`, creating it if missing.
    pub fn write(&self, path: &str, data: &[u8]) -> Result<(), Error> {
        let mut f = self.open(
            path,
            OpenOptions::new().write(true).create(true).truncate(true),
        )?;
        f.write_all(data)
    }
}
