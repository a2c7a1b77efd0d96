//! tmpfs: a writable file system in the kernel heap, with a size limit.
//!
//! Nodes live in a slab; a handle is the slot and the slot's generation, so a handle to a
//! node since freed is [`ErrorKind::Stale`], never another node. A file's data is a table of
//! 4 KiB chunks allocated as written: no reallocation of a whole file as it grows (bounded
//! work per write, no large contiguous allocation), holes read as zeros and cost nothing.
//!
//! **What counts against the limit**: every allocated chunk (4 KiB), every node
//! ([`NODE_COST`] plus its name), and so the chunk table too, since a file may not reach past
//! the limit. A write that would pass it is refused whole with [`ErrorKind::NoSpace`] before
//! anything changes; a heap that cannot give the memory is [`ErrorKind::OutOfMemory`], also
//! with nothing changed.
//!
//! **Removal while open**: a removed file stays readable and writable through the handles
//! that hold it, and is freed when the last is released (as on Unix).
//!
//! **Locking**: one lock `R` (a `lock_api` mutex: the kernel's sleeping mutex, with priority
//! inheritance) per file system, held for one operation — a copy of at most the caller's
//! buffer.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use lock_api::{Mutex, RawMutex};

use crate::node::{ErrorKind, FileSystem, FileType, Metadata, NewNode, NodeId, Usage};
use crate::path;

/// Bytes of a data chunk.
pub const CHUNK: usize = 4096;
/// What a node costs against the limit besides its name and data (the slab slot, the map
/// entry in its directory).
pub const NODE_COST: u64 = 128;

#[derive(Debug)]
enum Kind {
    File {
        len: u64,
        chunks: Vec<Option<Box<[u8]>>>,
    },
    Dir(BTreeMap<String, u32>),
    Symlink(String),
}

#[derive(Debug)]
struct Node {
    kind: Kind,
    perm: u32,
    /// The directory holding it (the root: itself).
    parent: u32,
    /// Whether a directory entry names it.
    linked: bool,
    /// Handles given out and not released.
    handles: u32,
    /// Bytes it costs (node, name, chunks).
    cost: u64,
    generation: u32,
}

#[derive(Debug)]
struct Tree {
    slots: Vec<Option<Node>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    used: u64,
    limit: u64,
}

/// A size-limited RAM file system, locked by `R`.
#[derive(Debug)]
pub struct Tmpfs<R: RawMutex> {
    tree: Mutex<R, Tree>,
}

fn id(slot: u32, generation: u32) -> NodeId {
    (u64::from(generation) << 32) | u64::from(slot)
}

impl Tree {
    fn get(&self, id: NodeId) -> Result<&Node, ErrorKind> {
        let slot = (id & 0xffff_ffff) as usize;
        match self.slots.get(slot) {
            Some(Some(n)) if n.generation == (id >> 32) as u32 => Ok(n),
            _ => Err(ErrorKind::Stale),
        }
    }

    fn get_mut(&mut self, id: NodeId) -> Result<&mut Node, ErrorKind> {
        node_mut(&mut self.slots, id)
    }

    fn charge(&mut self, bytes: u64) -> Result<(), ErrorKind> {
        if self.used.saturating_add(bytes) > self.limit {
            return Err(ErrorKind::NoSpace);
        }
        self.used += bytes;
        Ok(())
    }

    fn dir_of(&self, id: NodeId) -> Result<&BTreeMap<String, u32>, ErrorKind> {
        match &self.get(id)?.kind {
            Kind::Dir(d) => Ok(d),
            _ => Err(ErrorKind::NotADirectory),
        }
    }

    fn handle_of(&mut self, slot: u32) -> NodeId {
        let n = self.slots[slot as usize]
            .as_mut()
            .expect("a directory entry names a live node");
        n.handles += 1;
        id(slot, n.generation)
    }

    /// Allocates a slot for `node` (its cost already charged).
    fn insert(&mut self, mut node: Node) -> Result<u32, ErrorKind> {
        if let Some(slot) = self.free.pop() {
            node.generation = self.generations[slot as usize];
            self.slots[slot as usize] = Some(node);
            return Ok(slot);
        }
        if self.slots.len() >= u32::MAX as usize {
            return Err(ErrorKind::NoSpace);
        }
        self.slots
            .try_reserve(1)
            .and_then(|()| self.generations.try_reserve(1))
            .map_err(|_| ErrorKind::OutOfMemory)?;
        self.slots.push(Some(node));
        self.generations.push(0);
        Ok((self.slots.len() - 1) as u32)
    }

    /// Frees `slot` if nothing names or holds it.
    fn maybe_free(&mut self, slot: u32) {
        let s = slot as usize;
        let Some(n) = &self.slots[s] else { return };
        if n.linked || n.handles > 0 || slot == 0 {
            return;
        }
        self.used -= n.cost;
        self.slots[s] = None;
        self.generations[s] = self.generations[s].wrapping_add(1);
        self.free.push(slot);
    }

    /// Whether `slot` is `ancestor` or below it.
    fn is_under(&self, mut slot: u32, ancestor: u32) -> bool {
        loop {
            if slot == ancestor {
                return true;
            }
            let Some(n) = &self.slots[slot as usize] else {
                return false;
            };
            if n.parent == slot {
                return false;
            }
            slot = n.parent;
        }
    }
}

/// The node `id` names in `slots` (a split borrow of [`Tree`]'s field).
fn node_mut(slots: &mut [Option<Node>], id: NodeId) -> Result<&mut Node, ErrorKind> {
    match slots.get_mut((id & 0xffff_ffff) as usize) {
        Some(Some(n)) if n.generation == (id >> 32) as u32 => Ok(n),
        _ => Err(ErrorKind::Stale),
    }
}

fn slot_of(id: NodeId) -> u32 {
    (id & 0xffff_ffff) as u32
}

impl<R: RawMutex> Tmpfs<R> {
    /// An empty tmpfs holding at most `limit` bytes.
    pub fn new(limit: u64) -> Self {
        let root = Node {
            kind: Kind::Dir(BTreeMap::new()),
            perm: 0o755,
            parent: 0,
            linked: true,
            handles: 0,
            cost: NODE_COST,
            generation: 0,
        };
        Self {
            tree: Mutex::new(Tree {
                slots: alloc::vec![Some(root)],
                generations: alloc::vec![0],
                free: Vec::new(),
                used: NODE_COST,
                limit,
            }),
        }
    }
}

/// The chunk `index` of `chunks`, allocated (zeroed) if it was a hole; the table grows to
/// hold it. Charges nothing: the caller did.
fn chunk_mut(chunks: &mut Vec<Option<Box<[u8]>>>, index: usize) -> Result<&mut [u8], ErrorKind> {
    if chunks.len() <= index {
        chunks
            .try_reserve(index + 1 - chunks.len())
            .map_err(|_| ErrorKind::OutOfMemory)?;
        chunks.resize_with(index + 1, || None);
    }
    if chunks[index].is_none() {
        let mut v: Vec<u8> = Vec::new();
        v.try_reserve_exact(CHUNK)
            .map_err(|_| ErrorKind::OutOfMemory)?;
        v.resize(CHUNK, 0);
        chunks[index] = Some(v.into_boxed_slice());
    }
    Ok(chunks[index].as_deref_mut().expect("allocated just above"))
}

impl<R: RawMutex + Send + Sync> FileSystem for Tmpfs<R> {
    fn kind(&self) -> &'static str {
        "tmpfs"
    }

    fn root(&self) -> NodeId {
        0
    }

    fn lookup(&self, dir: NodeId, name: &str) -> Result<NodeId, ErrorKind> {
        let mut t = self.tree.lock();
        let slot = *t.dir_of(dir)?.get(name).ok_or(ErrorKind::NotFound)?;
        Ok(t.handle_of(slot))
    }

    fn release(&self, node: NodeId) {
        let mut t = self.tree.lock();
        if node == 0 {
            return;
        }
        if let Ok(n) = t.get_mut(node) {
            n.handles = n.handles.saturating_sub(1);
            t.maybe_free(slot_of(node));
        }
    }

    fn metadata(&self, node: NodeId) -> Result<Metadata, ErrorKind> {
        let t = self.tree.lock();
        let n = t.get(node)?;
        let (kind, len) = match &n.kind {
            Kind::File { len, .. } => (FileType::File, *len),
            Kind::Dir(d) => (FileType::Dir, d.len() as u64),
            Kind::Symlink(s) => (FileType::Symlink, s.len() as u64),
        };
        Ok(Metadata {
            kind,
            len,
            perm: n.perm,
            ino: u64::from(slot_of(node)),
            modified: None,
        })
    }

    fn read(&self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let t = self.tree.lock();
        let (len, chunks) = match &t.get(node)?.kind {
            Kind::File { len, chunks } => (*len, chunks),
            Kind::Dir(_) => return Err(ErrorKind::IsADirectory),
            Kind::Symlink(_) => return Err(ErrorKind::Unsupported),
        };
        if offset >= len {
            return Ok(0);
        }
        let n = ((len - offset).min(buf.len() as u64)) as usize;
        let mut done = 0;
        while done < n {
            let at = offset as usize + done;
            let (c, within) = (at / CHUNK, at % CHUNK);
            let step = (CHUNK - within).min(n - done);
            match chunks.get(c).and_then(Option::as_deref) {
                Some(data) => buf[done..done + step].copy_from_slice(&data[within..within + step]),
                None => buf[done..done + step].fill(0),
            }
            done += step;
        }
        Ok(n)
    }

    fn read_link(&self, node: NodeId) -> Result<String, ErrorKind> {
        let t = self.tree.lock();
        match &t.get(node)?.kind {
            Kind::Symlink(s) => {
                let mut out = String::new();
                out.try_reserve(s.len())
                    .map_err(|_| ErrorKind::OutOfMemory)?;
                out.push_str(s);
                Ok(out)
            }
            _ => Err(ErrorKind::InvalidArgument("not a symbolic link")),
        }
    }

    fn read_dir(
        &self,
        dir: NodeId,
        from: usize,
        each: &mut dyn FnMut(usize, &str, FileType) -> bool,
    ) -> Result<(), ErrorKind> {
        let t = self.tree.lock();
        for (i, (name, slot)) in t.dir_of(dir)?.iter().enumerate().skip(from) {
            let kind = match t.slots[*slot as usize].as_ref().map(|n| &n.kind) {
                Some(Kind::File { .. }) => FileType::File,
                Some(Kind::Dir(_)) => FileType::Dir,
                Some(Kind::Symlink(_)) => FileType::Symlink,
                None => FileType::Other,
            };
            if !each(i, name, kind) {
                break;
            }
        }
        Ok(())
    }

    fn usage(&self) -> Usage {
        let t = self.tree.lock();
        Usage {
            used: t.used,
            limit: Some(t.limit),
            nodes: (t.slots.len() - t.free.len()) as u64,
        }
    }

    fn write(&self, node: NodeId, offset: u64, buf: &[u8]) -> Result<usize, ErrorKind> {
        let mut t = self.tree.lock();
        let t = &mut *t;
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or(ErrorKind::InvalidArgument("offset past 2^64"))?;
        let limit = t.limit;
        let n = node_mut(&mut t.slots, node)?;
        let Kind::File { len, chunks } = &mut n.kind else {
            return Err(match n.kind {
                Kind::Dir(_) => ErrorKind::IsADirectory,
                _ => ErrorKind::Unsupported,
            });
        };
        if buf.is_empty() {
            return Ok(0);
        }
        if end > limit {
            return Err(ErrorKind::NoSpace);
        }
        // Charge the chunks that are holes now, all or nothing.
        let (first, last) = (
            (offset / CHUNK as u64) as usize,
            ((end - 1) / CHUNK as u64) as usize,
        );
        let new = (first..=last)
            .filter(|&c| chunks.get(c).is_none_or(Option::is_none))
            .count() as u64
            * CHUNK as u64;
        if t.used.saturating_add(new) > limit {
            return Err(ErrorKind::NoSpace);
        }
        let mut done = 0;
        let mut added = 0;
        let result = loop {
            if done == buf.len() {
                break Ok(done);
            }
            let at = offset as usize + done;
            let (c, within) = (at / CHUNK, at % CHUNK);
            let was_hole = chunks.get(c).is_none_or(Option::is_none);
            let chunk = match chunk_mut(chunks, c) {
                Ok(chunk) => chunk,
                Err(e) => break Err(e),
            };
            if was_hole {
                added += CHUNK as u64;
            }
            let step = (CHUNK - within).min(buf.len() - done);
            chunk[within..within + step].copy_from_slice(&buf[done..done + step]);
            done += step;
        };
        // What was written stays written (and is counted), even when the heap ran out midway.
        if done > 0 {
            *len = (*len).max(offset + done as u64);
        }
        n.cost += added;
        t.used += added;
        match result {
            Err(e) if done == 0 => Err(e),
            _ => Ok(done),
        }
    }

    fn set_len(&self, node: NodeId, new_len: u64) -> Result<(), ErrorKind> {
        let mut t = self.tree.lock();
        let t = &mut *t;
        if new_len > t.limit {
            return Err(ErrorKind::NoSpace);
        }
        let n = node_mut(&mut t.slots, node)?;
        let Kind::File { len, chunks } = &mut n.kind else {
            return Err(ErrorKind::IsADirectory);
        };
        if new_len < *len {
            // Free the chunks wholly past the end; zero the tail of the last one kept.
            let keep = (new_len as usize).div_ceil(CHUNK);
            let mut freed = 0;
            for c in chunks.iter_mut().skip(keep) {
                if c.take().is_some() {
                    freed += CHUNK as u64;
                }
            }
            chunks.truncate(keep);
            if let Some(Some(last)) = chunks.get_mut(keep.wrapping_sub(1))
                && !(new_len as usize).is_multiple_of(CHUNK)
            {
                last[new_len as usize % CHUNK..].fill(0);
            }
            n.cost -= freed;
            t.used -= freed;
        }
        // Growing only moves the end: the new part is a hole.
        *len = new_len;
        Ok(())
    }

    fn create(&self, dir: NodeId, name: &str, new: NewNode<'_>) -> Result<NodeId, ErrorKind> {
        path::check_name(name)?;
        let mut t = self.tree.lock();
        if t.dir_of(dir)?.contains_key(name) {
            return Err(ErrorKind::AlreadyExists);
        }
        let (kind, perm, extra) = match new {
            NewNode::File { perm } => (
                Kind::File {
                    len: 0,
                    chunks: Vec::new(),
                },
                perm,
                0,
            ),
            NewNode::Dir { perm } => (Kind::Dir(BTreeMap::new()), perm, 0),
            NewNode::Symlink { target } => {
                path::check_path(target)?;
                let mut s = String::new();
                s.try_reserve(target.len())
                    .map_err(|_| ErrorKind::OutOfMemory)?;
                s.push_str(target);
                (Kind::Symlink(s), 0o777, target.len() as u64)
            }
        };
        let cost = NODE_COST + name.len() as u64 + extra;
        t.charge(cost)?;
        let mut key = String::new();
        if key.try_reserve(name.len()).is_err() {
            t.used -= cost;
            return Err(ErrorKind::OutOfMemory);
        }
        key.push_str(name);
        let slot = match t.insert(Node {
            kind,
            perm: perm & 0o7777,
            parent: slot_of(dir),
            linked: true,
            handles: 1,
            cost,
            generation: 0,
        }) {
            Ok(s) => s,
            Err(e) => {
                t.used -= cost;
                return Err(e);
            }
        };
        let Ok(Node {
            kind: Kind::Dir(d), ..
        }) = t.get_mut(dir)
        else {
            unreachable!("checked to be a directory above, under the same lock")
        };
        d.insert(key, slot);
        let generation = t.slots[slot as usize].as_ref().map_or(0, |n| n.generation);
        Ok(id(slot, generation))
    }

    fn remove(&self, dir: NodeId, name: &str, is_dir: bool) -> Result<(), ErrorKind> {
        let mut t = self.tree.lock();
        let slot = *t.dir_of(dir)?.get(name).ok_or(ErrorKind::NotFound)?;
        let node = t.slots[slot as usize]
            .as_ref()
            .expect("a directory entry names a live node");
        match (&node.kind, is_dir) {
            (Kind::Dir(d), true) if !d.is_empty() => return Err(ErrorKind::DirectoryNotEmpty),
            (Kind::Dir(_), true) => {}
            (Kind::Dir(_), false) => return Err(ErrorKind::IsADirectory),
            (_, true) => return Err(ErrorKind::NotADirectory),
            (_, false) => {}
        }
        if let Ok(Node {
            kind: Kind::Dir(d), ..
        }) = t.get_mut(dir)
        {
            d.remove(name);
        }
        if let Some(n) = t.slots[slot as usize].as_mut() {
            n.linked = false;
        }
        t.maybe_free(slot);
        Ok(())
    }

    fn rename(
        &self,
        from_dir: NodeId,
        from: &str,
        to_dir: NodeId,
        to: &str,
    ) -> Result<(), ErrorKind> {
        path::check_name(to)?;
        let mut t = self.tree.lock();
        let slot = *t.dir_of(from_dir)?.get(from).ok_or(ErrorKind::NotFound)?;
        let target = t.dir_of(to_dir)?.get(to).copied();
        if target == Some(slot) {
            return Ok(());
        }
        let moving_dir = matches!(
            t.slots[slot as usize].as_ref().map(|n| &n.kind),
            Some(Kind::Dir(_))
        );
        if moving_dir && t.is_under(slot_of(to_dir), slot) {
            return Err(ErrorKind::IntoItself);
        }
        if let Some(old) = target {
            match (
                &t.slots[old as usize].as_ref().expect("live").kind,
                moving_dir,
            ) {
                (Kind::Dir(d), true) if !d.is_empty() => return Err(ErrorKind::DirectoryNotEmpty),
                (Kind::Dir(_), false) => return Err(ErrorKind::IsADirectory),
                (_, true)
                    if !matches!(
                        t.slots[old as usize].as_ref().map(|n| &n.kind),
                        Some(Kind::Dir(_))
                    ) =>
                {
                    return Err(ErrorKind::NotADirectory);
                }
                _ => {}
            }
        }
        // The name's cost moves with it.
        let delta = to.len() as i64 - from.len() as i64;
        if delta > 0 {
            t.charge(delta as u64)?;
        }
        let mut key = String::new();
        if key.try_reserve(to.len()).is_err() {
            if delta > 0 {
                t.used -= delta as u64;
            }
            return Err(ErrorKind::OutOfMemory);
        }
        key.push_str(to);
        if delta < 0 {
            t.used -= delta.unsigned_abs();
        }
        if let Some(n) = t.slots[slot as usize].as_mut() {
            n.cost = n.cost.saturating_add_signed(delta);
            n.parent = slot_of(to_dir);
        }
        if let Ok(Node {
            kind: Kind::Dir(d), ..
        }) = t.get_mut(from_dir)
        {
            d.remove(from);
        }
        if let Ok(Node {
            kind: Kind::Dir(d), ..
        }) = t.get_mut(to_dir)
        {
            d.insert(key, slot);
        }
        if let Some(old) = target {
            if let Some(n) = t.slots[old as usize].as_mut() {
                n.linked = false;
            }
            t.maybe_free(old);
        }
        Ok(())
    }
}
