//! The 9P client against an in-memory 9P2000.L server (written here over a tmpfs, path-based),
//! through the VFS as an app uses it; then against a server whose replies are damaged in
//! every way a hostile or broken one could, and one that shrinks the message size.

use crate::node::{ErrorKind as K, FileSystem, NewNode, NodeId};
use crate::p9::{HEADER, In, Out, P9Fs, Transport, msg};
use crate::*;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use std::collections::HashMap;
use std::sync::Mutex as StdMutex;

type Raw = spin::mutex::SpinMutex<()>;

/// What a test does to each reply before the client sees it.
type Damage = Box<dyn Fn(u8, &mut Vec<u8>) + Send + Sync>;

struct Server {
    fs: Tmpfs<Raw>,
    msize: u32,
    /// fid → path (components) and whether it is open.
    fids: StdMutex<HashMap<u32, (Vec<String>, bool)>>,
    damage: StdMutex<Option<Damage>>,
}

fn errno(k: K) -> u32 {
    match k {
        K::NotFound => 2,
        K::AlreadyExists => 17,
        K::NotADirectory => 20,
        K::IsADirectory => 21,
        K::DirectoryNotEmpty => 39,
        K::NoSpace => 28,
        K::InvalidArgument(_) => 22,
        _ => 5,
    }
}

impl Server {
    fn new(msize: u32) -> Arc<Server> {
        Arc::new(Server {
            fs: Tmpfs::new(16 << 20),
            msize,
            fids: StdMutex::new(HashMap::new()),
            damage: StdMutex::new(None),
        })
    }

    /// The node at `path` (a handle to release, or the root).
    fn resolve(&self, path: &[String]) -> Result<NodeId, K> {
        let mut cur = self.fs.root();
        for c in path {
            let next = self.fs.lookup(cur, c);
            if cur != self.fs.root() {
                self.fs.release(cur);
            }
            cur = next?;
        }
        Ok(cur)
    }

    fn with<X>(&self, path: &[String], f: impl FnOnce(NodeId) -> Result<X, K>) -> Result<X, K> {
        let n = self.resolve(path)?;
        let r = f(n);
        if n != self.fs.root() {
            self.fs.release(n);
        }
        r
    }

    fn path(&self, fid: u32) -> Result<(Vec<String>, bool), K> {
        self.fids.lock().unwrap().get(&fid).cloned().ok_or(K::Stale)
    }

    fn handle(&self, kind: u8, b: &mut In<'_>) -> Result<Out, K> {
        let qid = |o: Out, dir: bool| o.u8(if dir { 0x80 } else { 0 }).u32(0).u64(7);
        let r = |kind: u8| Out::new(kind + 1, 1);
        match kind {
            msg::TATTACH => {
                let fid = b.u32()?;
                self.fids.lock().unwrap().insert(fid, (Vec::new(), false));
                Ok(qid(r(kind), true))
            }
            msg::TWALK => {
                let (fid, new, n) = (b.u32()?, b.u32()?, b.u16()?);
                let (mut path, _) = self.path(fid)?;
                let mut out = r(kind);
                let mut walked = 0u16;
                let mut qids = Vec::new();
                for i in 0..n {
                    let name = String::from(b.str()?);
                    let mut next = path.clone();
                    next.push(name);
                    match self.with(&next, |node| self.fs.metadata(node)) {
                        Ok(m) => {
                            qids.push(m.is_dir());
                            path = next;
                            walked += 1;
                        }
                        Err(e) if i == 0 => return Err(e),
                        Err(_) => break,
                    }
                }
                if walked == n {
                    self.fids.lock().unwrap().insert(new, (path, false));
                }
                out = out.u16(walked);
                for d in qids {
                    out = qid(out, d);
                }
                Ok(out)
            }
            msg::TGETATTR => {
                let fid = b.u32()?;
                let (path, _) = self.path(fid)?;
                let m = self.with(&path, |n| self.fs.metadata(n))?;
                let mode = match m.kind {
                    FileType::Dir => 0o040_000,
                    FileType::Symlink => 0o120_000,
                    _ => 0o100_000,
                } | m.perm;
                let mut o = qid(r(kind).u64(0x7ff), m.is_dir()).u32(mode);
                o = o.u32(0).u32(0).u64(1).u64(0).u64(m.len).u64(4096).u64(0);
                for _ in 0..14 {
                    o = o.u64(0);
                }
                Ok(o)
            }
            msg::TLOPEN => {
                let (fid, flags) = (b.u32()?, b.u32()?);
                let (path, _) = self.path(fid)?;
                let m = self.with(&path, |n| self.fs.metadata(n))?;
                if flags & 0o200000 != 0 && !m.is_dir() {
                    return Err(K::NotADirectory);
                }
                self.fids.lock().unwrap().insert(fid, (path, true));
                Ok(qid(r(kind), m.is_dir()).u32(0))
            }
            msg::TLCREATE => {
                let (fid, name, _f, perm, _g) = (b.u32()?, b.str()?, b.u32()?, b.u32()?, b.u32()?);
                let (mut path, _) = self.path(fid)?;
                let node = self.with(&path, |d| self.fs.create(d, name, NewNode::File { perm }))?;
                self.fs.release(node);
                path.push(String::from(name));
                self.fids.lock().unwrap().insert(fid, (path, true));
                Ok(qid(r(kind), false).u32(0))
            }
            msg::TREAD => {
                let (fid, off, count) = (b.u32()?, b.u64()?, b.u32()?);
                let (path, open) = self.path(fid)?;
                if !open {
                    return Err(K::InvalidArgument("not open"));
                }
                let mut buf = alloc::vec![0u8; count as usize];
                let n = self.with(&path, |node| self.fs.read(node, off, &mut buf))?;
                Ok(r(kind).u32(n as u32).bytes(&buf[..n]))
            }
            msg::TWRITE => {
                let (fid, off, count) = (b.u32()?, b.u64()?, b.u32()?);
                let data = b.bytes(count as usize)?;
                let (path, open) = self.path(fid)?;
                if !open {
                    return Err(K::InvalidArgument("not open"));
                }
                let n = self.with(&path, |node| self.fs.write(node, off, data))?;
                Ok(r(kind).u32(n as u32))
            }
            msg::TREADDIR => {
                let (fid, off, count) = (b.u32()?, b.u64()?, b.u32()?);
                let (path, _) = self.path(fid)?;
                let mut entries = Vec::new();
                self.with(&path, |d| {
                    self.fs.read_dir(d, off as usize, &mut |i, name, kind| {
                        let t = match kind {
                            FileType::Dir => 4,
                            FileType::Symlink => 10,
                            _ => 8,
                        };
                        let e = Out::new(0, 0)
                            .u8(0)
                            .u32(0)
                            .u64(i as u64)
                            .u64(i as u64 + 1)
                            .u8(t)
                            .str(name)
                            .finish();
                        entries.push(e[HEADER..].to_vec());
                        true
                    })
                })?;
                let mut data = Vec::new();
                for e in entries {
                    if data.len() + e.len() > count as usize {
                        break;
                    }
                    data.extend(e);
                }
                Ok(r(kind).u32(data.len() as u32).bytes(&data))
            }
            msg::TMKDIR => {
                let (fid, name, perm) = (b.u32()?, b.str()?, b.u32()?);
                let (path, _) = self.path(fid)?;
                let n = self.with(&path, |d| self.fs.create(d, name, NewNode::Dir { perm }))?;
                self.fs.release(n);
                Ok(qid(r(kind), true))
            }
            msg::TSYMLINK => {
                let (fid, name, target) = (b.u32()?, b.str()?, b.str()?);
                let (path, _) = self.path(fid)?;
                let n = self.with(&path, |d| {
                    self.fs.create(d, name, NewNode::Symlink { target })
                })?;
                self.fs.release(n);
                Ok(qid(r(kind), false))
            }
            msg::TREADLINK => {
                let (path, _) = self.path(b.u32()?)?;
                let t = self.with(&path, |n| self.fs.read_link(n))?;
                Ok(r(kind).str(&t))
            }
            msg::TUNLINKAT => {
                let (fid, name, flags) = (b.u32()?, b.str()?, b.u32()?);
                let (path, _) = self.path(fid)?;
                self.with(&path, |d| self.fs.remove(d, name, flags & 0x200 != 0))?;
                Ok(r(kind))
            }
            msg::TRENAMEAT => {
                let (f, from, t, to) = (b.u32()?, b.str()?, b.u32()?, b.str()?);
                let (fp, _) = self.path(f)?;
                let (tp, _) = self.path(t)?;
                let fd = self.resolve(&fp)?;
                let td = self.resolve(&tp);
                let res = td.and_then(|td| {
                    let res = self.fs.rename(fd, from, td, to);
                    if td != self.fs.root() {
                        self.fs.release(td);
                    }
                    res
                });
                if fd != self.fs.root() {
                    self.fs.release(fd);
                }
                res?;
                Ok(r(kind))
            }
            msg::TSETATTR => {
                let (fid, valid) = (b.u32()?, b.u32()?);
                let (_m, _u, _g, size) = (b.u32()?, b.u32()?, b.u32()?, b.u64()?);
                let (path, _) = self.path(fid)?;
                if valid & 8 != 0 {
                    self.with(&path, |n| self.fs.set_len(n, size))?;
                }
                Ok(r(kind))
            }
            msg::TCLUNK => {
                let fid = b.u32()?;
                self.fids.lock().unwrap().remove(&fid).ok_or(K::Stale)?;
                Ok(r(kind))
            }
            _ => Err(K::Unsupported),
        }
    }

    fn live_fids(&self) -> usize {
        self.fids.lock().unwrap().len()
    }
}

impl Transport for Arc<Server> {
    fn rpc(&self, request: &[u8], reply: &mut [u8]) -> Result<usize, K> {
        let kind = request[4];
        let mut b = In::new(&request[HEADER..]);
        let out = if kind == msg::TVERSION {
            let m = b.u32()?;
            Out::new(msg::TVERSION + 1, 0xffff)
                .u32(m.min(self.msize))
                .str("9P2000.L")
                .finish()
        } else {
            match self.handle(kind, &mut b) {
                Ok(o) => o.finish(),
                Err(e) => Out::new(msg::RLERROR, 1).u32(errno(e)).finish(),
            }
        };
        let mut out = out;
        if let Some(d) = self.damage.lock().unwrap().as_ref() {
            d(kind, &mut out);
        }
        let n = out.len().min(reply.len());
        reply[..n].copy_from_slice(&out[..n]);
        Ok(out.len())
    }
}

fn mounted(msize: u32) -> (Vfs<Raw>, Arc<Server>) {
    let server = Server::new(msize);
    let v = Vfs::<Raw>::new();
    v.mount("/", Arc::new(Tmpfs::<Raw>::new(1 << 20))).unwrap();
    v.create_dir("/share").unwrap();
    let fs = P9Fs::<Raw, _>::mount(server.clone(), "share").unwrap();
    v.mount("/share", Arc::new(fs)).unwrap();
    (v, server)
}

fn kind(r: Result<impl core::fmt::Debug, Error>) -> K {
    r.expect_err("must fail").kind
}

#[test]
fn files_through_9p() {
    for msize in [64 * 1024, 4096] {
        let (v, server) = mounted(msize);
        let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        v.write("/share/big", &big).unwrap();
        assert_eq!(v.read("/share/big").unwrap(), big, "msize {msize}");
        assert_eq!(v.metadata("/share/big").unwrap().len, 200_000);
        let mut f = v
            .open("/share/big", OpenOptions::new().read(true).write(true))
            .unwrap();
        f.seek(SeekFrom::Start(199_998)).unwrap();
        f.write_all(b"xyz").unwrap();
        f.set_len(100).unwrap();
        drop(f);
        assert_eq!(v.read("/share/big").unwrap(), &big[..100]);
        v.create_dir_all("/share/a/b/c").unwrap();
        for i in 0..300 {
            v.write(
                &alloc::format!("/share/a/f{i:03}"),
                alloc::format!("{i}").as_bytes(),
            )
            .unwrap();
        }
        let names: Vec<String> = v
            .read_dir("/share/a")
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(names.len(), 301, "300 files and b, over several Rreaddir");
        assert_eq!(names[0], "b");
        v.symlink("a/f007", "/share/link").unwrap();
        assert_eq!(v.read("/share/link").unwrap(), b"7");
        v.rename("/share/a/f001", "/share/a/b/moved").unwrap();
        assert_eq!(v.read("/share/a/b/moved").unwrap(), b"1");
        assert_eq!(kind(v.read("/share/a/f001")), K::NotFound);
        assert_eq!(kind(v.remove_dir("/share/a")), K::DirectoryNotEmpty);
        assert_eq!(kind(v.create_dir("/share/a")), K::AlreadyExists);
        assert_eq!(
            kind(v.open(
                "/share/big",
                OpenOptions::new().write(true).create_new(true)
            )),
            K::AlreadyExists
        );
        v.remove_file("/share/big").unwrap();
        assert_eq!(kind(v.metadata("/share/big")), K::NotFound);
        // Every fid but the root's was clunked.
        assert_eq!(server.live_fids(), 1, "msize {msize}: fids leaked");
    }
}

#[test]
fn damaged_replies_are_errors_and_the_share_goes_on() {
    let (v, server) = mounted(64 * 1024);
    v.write("/share/f", b"hello").unwrap();
    v.create_dir("/share/d").unwrap();
    v.write("/share/d/x", b"1").unwrap();
    type Mutate = fn(u8, &mut Vec<u8>);
    let cases: &[(&str, u8, Mutate)] = &[
        ("short", msg::TGETATTR, |_, m| m.truncate(5)),
        ("size field", msg::TGETATTR, |_, m| m[0] ^= 1),
        ("tag", msg::TGETATTR, |_, m| m[5] = 9),
        ("type", msg::TGETATTR, |_, m| m[4] = 99),
        ("body cut", msg::TGETATTR, |_, m| {
            m.truncate(40);
            let n = m.len() as u32;
            m[..4].copy_from_slice(&n.to_le_bytes());
        }),
        ("read count past data", msg::TREAD, |_, m| {
            m[7..11].copy_from_slice(&60_000u32.to_le_bytes());
        }),
        ("readdir cookie back to the start", msg::TREADDIR, |_, m| {
            // The only entry's cookie (after count[4], qid[13]) set to 0: asked again from 0.
            if m.len() > 7 + 4 + 13 + 8 {
                m[7 + 4 + 13..7 + 4 + 21].copy_from_slice(&0u64.to_le_bytes());
            }
        }),
        ("not UTF-8", msg::TREADLINK, |_, m| {
            if let Some(b) = m.get_mut(9) {
                *b = 0xff;
            }
        }),
        ("an oversized reply", msg::TGETATTR, |_, m| {
            m.resize(70_000, 0)
        }),
    ];
    v.symlink("f", "/share/l").unwrap();
    for (what, on, mutate) in cases {
        let (on, mutate) = (*on, *mutate);
        *server.damage.lock().unwrap() = Some(Box::new(move |k, m| {
            if k == on {
                mutate(k, m);
            }
        }));
        let r: Result<(), Error> = match on {
            msg::TGETATTR => v.metadata("/share/f").map(drop),
            msg::TREAD => v.read("/share/f").map(drop),
            msg::TREADDIR => v.read_dir("/share/d").map(drop),
            _ => v.read_link("/share/l").map(drop),
        };
        match r {
            Err(e) => assert!(matches!(e.kind, K::Io(_)), "{what}: {e}"),
            Ok(()) => panic!("{what}: a damaged reply was taken"),
        }
        *server.damage.lock().unwrap() = None;
        assert_eq!(
            v.read("/share/f").unwrap(),
            b"hello",
            "{what}: the share broke"
        );
    }
    // A server that does not speak 9P2000.L, or offers a tiny message size, is refused.
    let s = Server::new(64 * 1024);
    *s.damage.lock().unwrap() = Some(Box::new(|k, m| {
        if k == msg::TVERSION {
            *m = Out::new(msg::TVERSION + 1, 0xffff)
                .u32(8192)
                .str("9P2000")
                .finish();
        }
    }));
    assert!(P9Fs::<Raw, _>::mount(s, "x").is_err());
    let s = Server::new(512);
    assert_eq!(
        P9Fs::<Raw, _>::mount(s, "x").unwrap_err(),
        K::Io("the server's message size is below 4096")
    );
}
