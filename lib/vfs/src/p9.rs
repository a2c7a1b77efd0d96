//! A 9P2000.L client as a [`FileSystem`]: the messages Rhea sends and the replies it reads
//! (every reply checked: its size, type, tag and every count against the bytes there), over
//! any [`Transport`] — virtio-9p, Xen's 9pfs ring, or a test's in-memory server.
//!
//! **Handles are fids.** The root is the fid attached at mount; `lookup` walks a new fid one
//! name down; `release` clunks it. 9P reads and writes need an *opened* fid, which can no
//! longer walk, so a node opens a second fid (a walk of no names, then `Tlopen`) on its first
//! read or write and clunks both together. A listing opens its own fid for the call.
//!
//! **Bounds**: the message size is negotiated down from [`MSIZE`]; a read or write is cut into
//! pieces that fit; a reply longer than the buffer, or naming more bytes than it holds, is an
//! [`ErrorKind::Io`] naming what was wrong — never a panic or a read past the reply.
//!
//! One request at a time (the transport serializes): a tag of 1 on every request, checked on
//! every reply.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use lock_api::{Mutex, RawMutex};

use crate::node::{ErrorKind, FileSystem, FileType, Metadata, NewNode, NodeId, Usage};
use crate::path;

/// The largest message Rhea offers.
pub const MSIZE: u32 = 64 * 1024;
/// The smallest message size accepted from a server.
pub const MIN_MSIZE: u32 = 4096;
/// The protocol.
pub const VERSION: &str = "9P2000.L";
/// Bytes of a message's header: size, type, tag.
pub const HEADER: usize = 7;
const TAG: u16 = 1;
const NOFID: u32 = u32::MAX;

/// Message types (the T-message; its R-message is one more).
pub mod msg {
    /// An error reply.
    pub const RLERROR: u8 = 7;
    /// Open.
    pub const TLOPEN: u8 = 12;
    /// Create and open.
    pub const TLCREATE: u8 = 14;
    /// Make a link.
    pub const TSYMLINK: u8 = 16;
    /// Read a link.
    pub const TREADLINK: u8 = 22;
    /// Attributes.
    pub const TGETATTR: u8 = 24;
    /// Change attributes (the size).
    pub const TSETATTR: u8 = 26;
    /// List a directory.
    pub const TREADDIR: u8 = 40;
    /// Make a directory.
    pub const TMKDIR: u8 = 72;
    /// Rename.
    pub const TRENAMEAT: u8 = 74;
    /// Remove.
    pub const TUNLINKAT: u8 = 76;
    /// Negotiate.
    pub const TVERSION: u8 = 100;
    /// Attach to the tree.
    pub const TATTACH: u8 = 104;
    /// Walk.
    pub const TWALK: u8 = 110;
    /// Read.
    pub const TREAD: u8 = 116;
    /// Write.
    pub const TWRITE: u8 = 118;
    /// Forget a fid.
    pub const TCLUNK: u8 = 120;
}

/// One request and one reply at a time, blocking the caller.
pub trait Transport: Send + Sync {
    /// Sends `request` (a whole message) and waits for the reply, written into `reply`;
    /// returns the reply's length. A transport failure is [`ErrorKind::Io`].
    fn rpc(&self, request: &[u8], reply: &mut [u8]) -> Result<usize, ErrorKind>;
}

/// A message being built.
#[derive(Debug)]
pub struct Out(Vec<u8>);

impl Out {
    /// A message of type `kind` with tag `tag` (its size filled in by [`Out::finish`]).
    pub fn new(kind: u8, tag: u16) -> Out {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(&[0, 0, 0, 0, kind]);
        v.extend_from_slice(&tag.to_le_bytes());
        Out(v)
    }
    /// A byte.
    pub fn u8(mut self, v: u8) -> Out {
        self.0.push(v);
        self
    }
    /// A 16-bit number.
    pub fn u16(mut self, v: u16) -> Out {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A 32-bit number.
    pub fn u32(mut self, v: u32) -> Out {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A 64-bit number.
    pub fn u64(mut self, v: u64) -> Out {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A string (16-bit length, then the bytes; at most 65535 of them — longer is cut, and
    /// names are checked far below that first).
    pub fn str(mut self, s: &str) -> Out {
        let n = s.len().min(u16::MAX as usize);
        self = self.u16(n as u16);
        self.0.extend_from_slice(&s.as_bytes()[..n]);
        self
    }
    /// Raw bytes.
    pub fn bytes(mut self, b: &[u8]) -> Out {
        self.0.extend_from_slice(b);
        self
    }
    /// The message with its size.
    pub fn finish(mut self) -> Vec<u8> {
        let n = self.0.len() as u32;
        self.0[..4].copy_from_slice(&n.to_le_bytes());
        self.0
    }
}

/// A reply being read: every read checked against what is there.
#[derive(Debug)]
pub struct In<'a> {
    b: &'a [u8],
    at: usize,
}

fn bad(what: &'static str) -> ErrorKind {
    ErrorKind::Io(what)
}

impl<'a> In<'a> {
    /// A reader of `bytes` (a message's body, for a server or a test).
    pub fn new(bytes: &'a [u8]) -> In<'a> {
        In { b: bytes, at: 0 }
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.at >= self.b.len()
    }

    /// The body of `reply` to a request of type `kind`: its size, type and tag checked; an
    /// `Rlerror` becomes its errno's [`ErrorKind`].
    pub fn reply(reply: &'a [u8], kind: u8) -> Result<In<'a>, ErrorKind> {
        if reply.len() < HEADER {
            return Err(bad("a 9P reply shorter than its header"));
        }
        let size = u32::from_le_bytes([reply[0], reply[1], reply[2], reply[3]]) as usize;
        if size != reply.len() {
            return Err(bad("a 9P reply whose size field is not its length"));
        }
        if u16::from_le_bytes([reply[5], reply[6]]) != TAG {
            return Err(bad("a 9P reply with another request's tag"));
        }
        let mut r = In {
            b: &reply[HEADER..],
            at: 0,
        };
        match reply[4] {
            t if t == kind + 1 => Ok(r),
            msg::RLERROR => Err(ErrorKind::from_errno(r.u32()?)),
            _ => Err(bad("a 9P reply of the wrong type")),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], ErrorKind> {
        let s = self
            .b
            .get(self.at..self.at.checked_add(n).ok_or(bad("a 9P count past 2^64"))?)
            .ok_or(bad("a 9P reply shorter than its contents say"))?;
        self.at += n;
        Ok(s)
    }
    /// A byte.
    pub fn u8(&mut self) -> Result<u8, ErrorKind> {
        Ok(self.take(1)?[0])
    }
    /// A 16-bit number.
    pub fn u16(&mut self) -> Result<u16, ErrorKind> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    /// A 32-bit number.
    pub fn u32(&mut self) -> Result<u32, ErrorKind> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A 64-bit number.
    pub fn u64(&mut self) -> Result<u64, ErrorKind> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    /// A string (UTF-8 checked).
    pub fn str(&mut self) -> Result<&'a str, ErrorKind> {
        let n = self.u16()? as usize;
        core::str::from_utf8(self.take(n)?).map_err(|_| bad("a 9P string that is not UTF-8"))
    }
    /// `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ErrorKind> {
        self.take(n)
    }
    /// A qid: type, version, path.
    pub fn qid(&mut self) -> Result<(u8, u64), ErrorKind> {
        let kind = self.u8()?;
        let _version = self.u32()?;
        Ok((kind, self.u64()?))
    }
}

/// `O_*` flags of `Tlopen` and `Tlcreate` (Linux's numbering, which 9P2000.L uses).
mod flags {
    pub(super) const RDONLY: u32 = 0;
    pub(super) const RDWR: u32 = 2;
    pub(super) const CREAT: u32 = 0o100;
    pub(super) const EXCL: u32 = 0o200;
    pub(super) const DIRECTORY: u32 = 0o200000;
}

/// The most entries one listing takes from a server (a bound on a server whose cookies
/// cycle).
pub const MAX_DIR_ENTRIES: usize = 1 << 20;

/// `Tgetattr`'s mask: mode, nlink, uid, gid, rdev, times, ino, size, blocks.
const GETATTR_BASIC: u64 = 0x7ff;
/// `Tsetattr`'s valid bit for the size.
const SETATTR_SIZE: u32 = 0x8;
/// `Tunlinkat`'s flag for a directory.
const AT_REMOVEDIR: u32 = 0x200;

#[derive(Debug, Default)]
struct Fids {
    next: u32,
    free: Vec<u32>,
    /// Each handle's opened fid for reads and writes, once made.
    io: BTreeMap<u32, u32>,
    /// Handles given out (the root included).
    live: BTreeMap<u32, ()>,
}

/// A 9P2000.L share, locked by `R`.
pub struct P9Fs<R: RawMutex, T: Transport> {
    t: T,
    msize: u32,
    root: u32,
    fids: Mutex<R, Fids>,
}

impl<R: RawMutex, T: Transport> core::fmt::Debug for P9Fs<R, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("P9Fs").field("msize", &self.msize).finish()
    }
}

impl<R: RawMutex, T: Transport> P9Fs<R, T> {
    /// Negotiates the version and message size and attaches to the server's tree `aname`.
    pub fn mount(t: T, aname: &str) -> Result<Self, ErrorKind> {
        let mut reply = vec![0u8; MSIZE as usize];
        let req = Out::new(msg::TVERSION, 0xffff)
            .u32(MSIZE)
            .str(VERSION)
            .finish();
        let n = t.rpc(&req, &mut reply)?;
        // Tversion's tag is NOTAG; check the reply's by hand.
        let r = reply
            .get(..n)
            .ok_or(bad("a 9P reply longer than the buffer"))?;
        if r.len() < HEADER + 4 || r[4] != msg::TVERSION + 1 {
            return Err(bad("no Rversion to Tversion"));
        }
        let mut body = In {
            b: &r[HEADER..],
            at: 0,
        };
        let msize = body.u32()?.min(MSIZE);
        if body.str()? != VERSION {
            return Err(ErrorKind::Io("the server does not speak 9P2000.L"));
        }
        if msize < MIN_MSIZE {
            return Err(bad("the server's message size is below 4096"));
        }
        let fs = Self {
            t,
            msize,
            root: 0,
            fids: Mutex::new(Fids {
                next: 1,
                ..Fids::default()
            }),
        };
        let req = Out::new(msg::TATTACH, TAG)
            .u32(0)
            .u32(NOFID)
            .str("root")
            .str(aname)
            .u32(0)
            .finish();
        fs.call(&req, msg::TATTACH, |r| r.qid().map(drop))?;
        fs.fids.lock().live.insert(0, ());
        Ok(fs)
    }

    /// The negotiated message size.
    pub fn msize(&self) -> u32 {
        self.msize
    }

    /// One request; `read` takes the reply's body.
    fn call<X>(
        &self,
        req: &[u8],
        kind: u8,
        read: impl FnOnce(&mut In<'_>) -> Result<X, ErrorKind>,
    ) -> Result<X, ErrorKind> {
        let mut reply = vec![0u8; self.msize as usize];
        let n = self.t.rpc(req, &mut reply)?;
        let r = reply
            .get(..n)
            .ok_or(bad("a 9P reply longer than the buffer"))?;
        read(&mut In::reply(r, kind)?)
    }

    fn alloc_fid(&self) -> Result<u32, ErrorKind> {
        let mut f = self.fids.lock();
        if let Some(fid) = f.free.pop() {
            return Ok(fid);
        }
        if f.next == NOFID {
            return Err(ErrorKind::Io("out of 9P fids"));
        }
        f.next += 1;
        Ok(f.next - 1)
    }

    fn clunk(&self, fid: u32) {
        let req = Out::new(msg::TCLUNK, TAG).u32(fid).finish();
        // A clunk that fails still frees the fid (9P: the fid is gone either way).
        let _ = self.call(&req, msg::TCLUNK, |_| Ok(()));
        self.fids.lock().free.push(fid);
    }

    fn fid(&self, node: NodeId) -> Result<u32, ErrorKind> {
        let fid = u32::try_from(node).map_err(|_| ErrorKind::Stale)?;
        if self.fids.lock().live.contains_key(&fid) {
            Ok(fid)
        } else {
            Err(ErrorKind::Stale)
        }
    }

    /// A new fid walked from `from` by `names` (none: a copy).
    fn walk(&self, from: u32, names: &[&str]) -> Result<u32, ErrorKind> {
        let new = self.alloc_fid()?;
        let mut req = Out::new(msg::TWALK, TAG)
            .u32(from)
            .u32(new)
            .u16(names.len() as u16);
        for n in names {
            req = req.str(n);
        }
        let walked = self.call(&req.finish(), msg::TWALK, |r| r.u16());
        match walked {
            Ok(n) if usize::from(n) == names.len() => Ok(new),
            Ok(_) => {
                // A partial walk makes no fid.
                self.fids.lock().free.push(new);
                Err(ErrorKind::NotFound)
            }
            Err(e) => {
                self.fids.lock().free.push(new);
                Err(e)
            }
        }
    }

    /// A copy of `fid` opened with `flags`.
    fn open_copy(&self, fid: u32, flags: u32) -> Result<u32, ErrorKind> {
        let io = self.walk(fid, &[])?;
        let req = Out::new(msg::TLOPEN, TAG).u32(io).u32(flags).finish();
        match self.call(&req, msg::TLOPEN, |r| r.qid().map(drop)) {
            Ok(()) => Ok(io),
            Err(e) => {
                self.clunk(io);
                Err(e)
            }
        }
    }

    /// The opened fid for `node`'s reads and writes (read-write, else read-only).
    fn io_fid(&self, node: NodeId) -> Result<u32, ErrorKind> {
        let fid = self.fid(node)?;
        if let Some(io) = self.fids.lock().io.get(&fid) {
            return Ok(*io);
        }
        let io = match self.open_copy(fid, flags::RDWR) {
            Ok(io) => io,
            Err(ErrorKind::Io(_) | ErrorKind::ReadOnly) => self.open_copy(fid, flags::RDONLY)?,
            Err(e) => return Err(e),
        };
        let mut f = self.fids.lock();
        match f.io.get(&fid) {
            // Another thread opened one meanwhile: keep theirs.
            Some(other) => {
                let other = *other;
                drop(f);
                self.clunk(io);
                Ok(other)
            }
            None => {
                f.io.insert(fid, io);
                Ok(io)
            }
        }
    }

    fn keep(&self, fid: u32) -> NodeId {
        self.fids.lock().live.insert(fid, ());
        u64::from(fid)
    }

    /// Most bytes of data a read or write carries.
    fn chunk(&self) -> usize {
        self.msize as usize - HEADER - 16
    }
}

impl<R: RawMutex + Send + Sync, T: Transport> FileSystem for P9Fs<R, T> {
    fn kind(&self) -> &'static str {
        "9p"
    }

    fn root(&self) -> NodeId {
        u64::from(self.root)
    }

    fn lookup(&self, dir: NodeId, name: &str) -> Result<NodeId, ErrorKind> {
        path::check_name(name)?;
        let d = self.fid(dir)?;
        let fid = self.walk(d, &[name])?;
        Ok(self.keep(fid))
    }

    fn release(&self, node: NodeId) {
        let Ok(fid) = self.fid(node) else { return };
        if fid == self.root {
            return;
        }
        let io = {
            let mut f = self.fids.lock();
            f.live.remove(&fid);
            f.io.remove(&fid)
        };
        if let Some(io) = io {
            self.clunk(io);
        }
        self.clunk(fid);
    }

    fn metadata(&self, node: NodeId) -> Result<Metadata, ErrorKind> {
        let fid = self.fid(node)?;
        let req = Out::new(msg::TGETATTR, TAG)
            .u32(fid)
            .u64(GETATTR_BASIC)
            .finish();
        self.call(&req, msg::TGETATTR, |r| {
            let _valid = r.u64()?;
            let (_, ino) = r.qid()?;
            let mode = r.u32()?;
            let _uid = r.u32()?;
            let _gid = r.u32()?;
            let _nlink = r.u64()?;
            let _rdev = r.u64()?;
            let size = r.u64()?;
            let _blksize = r.u64()?;
            let _blocks = r.u64()?;
            let _atime = (r.u64()?, r.u64()?);
            let mtime = r.u64()?;
            let kind = match mode & 0o170_000 {
                0o100_000 => FileType::File,
                0o040_000 => FileType::Dir,
                0o120_000 => FileType::Symlink,
                _ => FileType::Other,
            };
            Ok(Metadata {
                kind,
                len: size,
                perm: mode & 0o7777,
                ino,
                modified: Some(mtime),
            })
        })
    }

    fn read(&self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let io = self.io_fid(node)?;
        let mut done = 0;
        while done < buf.len() {
            let want = (buf.len() - done).min(self.chunk());
            let req = Out::new(msg::TREAD, TAG)
                .u32(io)
                .u64(offset + done as u64)
                .u32(want as u32)
                .finish();
            let got = self.call(&req, msg::TREAD, |r| {
                let n = r.u32()? as usize;
                if n > want {
                    return Err(bad("an Rread longer than asked"));
                }
                let data = r.bytes(n)?;
                buf[done..done + n].copy_from_slice(data);
                Ok(n)
            })?;
            done += got;
            if got < want {
                break;
            }
        }
        Ok(done)
    }

    fn read_link(&self, node: NodeId) -> Result<String, ErrorKind> {
        let fid = self.fid(node)?;
        let req = Out::new(msg::TREADLINK, TAG).u32(fid).finish();
        self.call(&req, msg::TREADLINK, |r| r.str().map(String::from))
    }

    fn read_dir(
        &self,
        dir: NodeId,
        from: usize,
        each: &mut dyn FnMut(usize, &str, FileType) -> bool,
    ) -> Result<(), ErrorKind> {
        let d = self.fid(dir)?;
        let io = self.open_copy(d, flags::RDONLY | flags::DIRECTORY)?;
        let result = (|| {
            let mut offset = 0u64;
            let mut index = 0usize;
            let mut seen = 0usize;
            loop {
                let req = Out::new(msg::TREADDIR, TAG)
                    .u32(io)
                    .u64(offset)
                    .u32(self.chunk() as u32)
                    .finish();
                let mut stop = false;
                let mut any = false;
                let asked = offset;
                self.call(&req, msg::TREADDIR, |r| {
                    let n = r.u32()? as usize;
                    let mut e = In {
                        b: r.bytes(n)?,
                        at: 0,
                    };
                    while e.at < e.b.len() {
                        let _qid = e.qid()?;
                        let next = e.u64()?;
                        let kind = match e.u8()? {
                            4 => FileType::Dir,
                            8 => FileType::File,
                            10 => FileType::Symlink,
                            _ => FileType::Other,
                        };
                        let name = e.str()?;
                        any = true;
                        // Offsets are the server's cookies (a host's `telldir`, not
                        // ordered): the next request starts at the last one. Bounded by
                        // the entries taken, not by their order.
                        offset = next;
                        seen += 1;
                        if seen > MAX_DIR_ENTRIES {
                            return Err(bad("a directory listing that does not end"));
                        }
                        if name == "." || name == ".." {
                            continue;
                        }
                        if index >= from && !stop && !each(index, name, kind) {
                            stop = true;
                        }
                        index += 1;
                    }
                    Ok(())
                })?;
                if stop || !any {
                    return Ok(());
                }
                if offset == asked {
                    return Err(bad(
                        "an Rreaddir that would be asked again from where it began",
                    ));
                }
            }
        })();
        self.clunk(io);
        result
    }

    fn usage(&self) -> Usage {
        Usage {
            used: 0,
            limit: None,
            nodes: self.fids.lock().live.len() as u64,
        }
    }

    fn write(&self, node: NodeId, offset: u64, buf: &[u8]) -> Result<usize, ErrorKind> {
        let io = self.io_fid(node)?;
        let mut done = 0;
        while done < buf.len() {
            let piece = &buf[done..(done + self.chunk()).min(buf.len())];
            let req = Out::new(msg::TWRITE, TAG)
                .u32(io)
                .u64(offset + done as u64)
                .u32(piece.len() as u32)
                .bytes(piece)
                .finish();
            let n = self.call(&req, msg::TWRITE, |r| r.u32())? as usize;
            if n == 0 || n > piece.len() {
                return Err(bad("an Rwrite of 0 bytes, or more than sent"));
            }
            done += n;
        }
        Ok(done)
    }

    fn set_len(&self, node: NodeId, len: u64) -> Result<(), ErrorKind> {
        let fid = self.fid(node)?;
        let req = Out::new(msg::TSETATTR, TAG)
            .u32(fid)
            .u32(SETATTR_SIZE)
            .u32(0)
            .u32(0)
            .u32(0)
            .u64(len)
            .u64(0)
            .u64(0)
            .u64(0)
            .u64(0)
            .finish();
        self.call(&req, msg::TSETATTR, |_| Ok(()))
    }

    fn create(&self, dir: NodeId, name: &str, new: NewNode<'_>) -> Result<NodeId, ErrorKind> {
        path::check_name(name)?;
        let d = self.fid(dir)?;
        match new {
            NewNode::File { perm } => {
                // Tlcreate turns the fid into the new, opened file: on a copy of the directory.
                let fid = self.walk(d, &[])?;
                let req = Out::new(msg::TLCREATE, TAG)
                    .u32(fid)
                    .str(name)
                    .u32(flags::RDWR | flags::CREAT | flags::EXCL)
                    .u32(perm & 0o7777)
                    .u32(0)
                    .finish();
                match self.call(&req, msg::TLCREATE, |r| r.qid().map(drop)) {
                    Ok(()) => {
                        // The file's own fid for walks and attributes; the created one does I/O.
                        let node = self.walk(d, &[name]);
                        match node {
                            Ok(n) => {
                                self.fids.lock().io.insert(n, fid);
                                Ok(self.keep(n))
                            }
                            Err(e) => {
                                self.clunk(fid);
                                Err(e)
                            }
                        }
                    }
                    Err(e) => {
                        self.clunk(fid);
                        Err(e)
                    }
                }
            }
            NewNode::Dir { perm } => {
                let req = Out::new(msg::TMKDIR, TAG)
                    .u32(d)
                    .str(name)
                    .u32(perm & 0o7777)
                    .u32(0)
                    .finish();
                self.call(&req, msg::TMKDIR, |r| r.qid().map(drop))?;
                self.lookup(dir, name)
            }
            NewNode::Symlink { target } => {
                path::check_path(target)?;
                let req = Out::new(msg::TSYMLINK, TAG)
                    .u32(d)
                    .str(name)
                    .str(target)
                    .u32(0)
                    .finish();
                self.call(&req, msg::TSYMLINK, |r| r.qid().map(drop))?;
                self.lookup(dir, name)
            }
        }
    }

    fn remove(&self, dir: NodeId, name: &str, is_dir: bool) -> Result<(), ErrorKind> {
        let d = self.fid(dir)?;
        let req = Out::new(msg::TUNLINKAT, TAG)
            .u32(d)
            .str(name)
            .u32(if is_dir { AT_REMOVEDIR } else { 0 })
            .finish();
        self.call(&req, msg::TUNLINKAT, |_| Ok(()))
    }

    fn rename(
        &self,
        from_dir: NodeId,
        from: &str,
        to_dir: NodeId,
        to: &str,
    ) -> Result<(), ErrorKind> {
        path::check_name(to)?;
        let (f, t) = (self.fid(from_dir)?, self.fid(to_dir)?);
        let req = Out::new(msg::TRENAMEAT, TAG)
            .u32(f)
            .str(from)
            .u32(t)
            .str(to)
            .finish();
        self.call(&req, msg::TRENAMEAT, |_| Ok(()))
    }
}
