//! A [`XenHost`] for the Xen harnesses, and a xenstored that answers through the real
//! interface page: honestly (a tree of values, watches, transactions), or — while a
//! [`Script`] has bytes left — as the fuzzer tells it, which may be any lie: replies with
//! other types, ids or lengths, raw bytes, watch events out of nowhere, indices moved
//! anywhere. Once the script runs out it is honest again, so every scenario ends.

use rhea_drivers::xen::grant::GrantTable;
use rhea_drivers::xen::xenstore::{HEADER_SIZE, Header, RING_SIZE, msg, page};
use rhea_drivers::xen::{SharedMem, XenError, XenHost};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The xenstore event channel.
pub const STORE_PORT: u32 = 1;

/// The fuzzer's bytes, shared by the harness (which operation next) and the server (what
/// xenstored does at each step).
#[derive(Debug, Default)]
pub struct Script {
    bytes: Vec<u8>,
    at: usize,
}

impl Script {
    /// A script over `bytes`.
    pub fn new(bytes: &[u8]) -> Script {
        Script {
            bytes: bytes.to_vec(),
            at: 0,
        }
    }

    /// Whether every byte was used.
    pub fn is_done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    /// The next byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    /// The next little-endian `u32`.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// Up to `n` next bytes.
    pub fn take(&mut self, n: usize) -> Vec<u8> {
        let start = self.at.min(self.bytes.len());
        let end = start.saturating_add(n).min(self.bytes.len());
        self.at = self.at.max(end);
        if end == start {
            self.at = self.at.saturating_add(n);
        }
        self.bytes[start..end].to_vec()
    }

    /// A short string: a length byte (mod 24), then that many bytes, lossily UTF-8.
    pub fn string(&mut self) -> String {
        let n = usize::from(self.u8() % 24);
        String::from_utf8_lossy(&self.take(n)).into_owned()
    }
}

/// xenstored.
#[derive(Debug, Default)]
pub struct Server {
    /// Values by absolute path.
    pub tree: BTreeMap<String, String>,
    watches: Vec<(String, String)>,
    inbuf: Vec<u8>,
    out: VecDeque<u8>,
    /// Requests seen (type, request id), newest last.
    pub requests: Vec<(u32, u32)>,
    /// While it has bytes, the fuzzer decides each step.
    pub script: Option<Script>,
    next_tx: u32,
    /// Writes that cause another: (path, value, then path, then value).
    links: Vec<(String, String, String, String)>,
}

/// Our domain's home.
pub const HOME: &str = "/local/domain/1";

fn abs(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{HOME}/{path}")
    }
}

fn under(path: &str, prefix: &str) -> bool {
    path == prefix || path.starts_with(&format!("{}/", prefix.trim_end_matches('/')))
}

impl Server {
    /// Sets a value (creating it), firing watches and linked writes.
    pub fn set(&mut self, path: &str, value: &str) {
        let p = abs(path);
        self.tree.insert(p.clone(), value.to_string());
        self.fire(&p);
        let then: Vec<(String, String)> = self
            .links
            .iter()
            .filter(|l| l.0 == p && l.1 == value)
            .map(|l| (l.2.clone(), l.3.clone()))
            .collect();
        for (path, value) in then {
            if self.get(&path) != Some(value.as_str()) {
                self.set(&path, &value);
            }
        }
    }

    /// When `path` is set to `value`, `then_path` is set to `then_value` (a back end reacting).
    pub fn link(&mut self, path: &str, value: &str, then_path: &str, then_value: &str) {
        self.links
            .push((abs(path), value.into(), abs(then_path), then_value.into()));
    }

    /// A value.
    pub fn get(&self, path: &str) -> Option<&str> {
        self.tree.get(&abs(path)).map(String::as_str)
    }

    fn fire(&mut self, changed: &str) {
        let hits: Vec<(String, String)> = self
            .watches
            .iter()
            .filter(|(p, _)| under(changed, p) || under(p, changed))
            .cloned()
            .collect();
        for (_, token) in hits {
            self.send(msg::WATCH_EVENT, 0, &[changed.as_bytes(), token.as_bytes()]);
        }
    }

    fn send(&mut self, ty: u32, req_id: u32, parts: &[&[u8]]) {
        let mut payload = Vec::new();
        for p in parts {
            payload.extend_from_slice(p);
            payload.push(0);
        }
        self.send_raw(ty, req_id, &payload);
    }

    fn send_raw(&mut self, ty: u32, req_id: u32, payload: &[u8]) {
        let h = Header {
            ty,
            req_id,
            tx_id: 0,
            len: payload.len() as u32,
        };
        self.out.extend(h.to_bytes());
        self.out.extend(payload);
    }

    fn error(&mut self, req_id: u32, name: &str) {
        self.send(msg::ERROR, req_id, &[name.as_bytes()]);
    }

    /// The honest answer to one request.
    fn handle(&mut self, h: Header, payload: &[u8]) {
        let args: Vec<String> = payload
            .split(|&b| b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
        let id = h.req_id;
        match h.ty {
            msg::READ => match self.tree.get(&abs(&arg(0))).cloned() {
                Some(v) => self.send_raw(msg::READ, id, v.as_bytes()),
                None => self.error(id, "ENOENT"),
            },
            msg::WRITE => {
                self.set(&arg(0), &arg(1));
                self.send(msg::WRITE, id, &[b"OK"]);
            }
            msg::DIRECTORY => {
                let dir = abs(&arg(0));
                let mut names: Vec<String> = self
                    .tree
                    .keys()
                    .filter_map(|k| k.strip_prefix(&format!("{dir}/")))
                    .filter_map(|rest| rest.split('/').next())
                    .map(str::to_string)
                    .collect();
                names.dedup();
                if names.is_empty() && !self.tree.contains_key(&dir) {
                    self.error(id, "ENOENT");
                } else {
                    let parts: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
                    self.send(msg::DIRECTORY, id, &parts);
                }
            }
            msg::MKDIR | msg::RM | msg::UNWATCH | msg::TRANSACTION_END => {
                if h.ty == msg::UNWATCH {
                    let (p, t) = (abs(&arg(0)), arg(1));
                    self.watches.retain(|w| *w != (p.clone(), t.clone()));
                }
                if h.ty == msg::RM {
                    let p = abs(&arg(0));
                    self.tree.retain(|k, _| !under(k, &p));
                }
                self.send(h.ty, id, &[b"OK"]);
            }
            msg::WATCH => {
                let (p, t) = (abs(&arg(0)), arg(1));
                self.watches.push((p.clone(), t.clone()));
                self.send(msg::WATCH, id, &[b"OK"]);
                // xenstored fires a new watch once at once.
                self.send(msg::WATCH_EVENT, 0, &[p.as_bytes(), t.as_bytes()]);
            }
            msg::TRANSACTION_START => {
                self.next_tx = self.next_tx.wrapping_add(1).max(1);
                let tx = self.next_tx.to_string();
                self.send(msg::TRANSACTION_START, id, &[tx.as_bytes()]);
            }
            msg::GET_DOMAIN_PATH => self.send(msg::GET_DOMAIN_PATH, id, &[HOME.as_bytes()]),
            _ => self.error(id, "EINVAL"),
        }
    }

    /// One step of xenstored: take the requests, answer them (honestly or as scripted), move
    /// the replies into the ring.
    pub fn step(&mut self, mem: &SharedMem) {
        let action = match self.script.as_mut() {
            Some(s) if !s.is_done() => Some(s.u8()),
            _ => None,
        };
        // Stalls leave the requests where they are.
        if action.is_none_or(|a| a % 16 != 0) {
            self.take_requests(mem);
        }
        let mut chunk = usize::MAX;
        if let (Some(a), Some(s)) = (action, self.script.as_mut()) {
            match a % 16 {
                1 => {
                    // The honest reply to the newest request, with its header mangled.
                    let field = s.u8() % 4;
                    let value = s.u32();
                    if self.out.len() >= HEADER_SIZE {
                        let at = usize::from(field) * 4;
                        for (i, b) in value.to_ne_bytes().into_iter().enumerate() {
                            self.out[at + i] = b;
                        }
                    }
                }
                2 => {
                    // Raw bytes.
                    let n = usize::from(s.u8());
                    let bytes = s.take(n);
                    self.out.extend(bytes);
                }
                3 => {
                    // A watch event from nowhere.
                    let (p, t) = (s.string(), s.string());
                    self.send(msg::WATCH_EVENT, 0, &[p.as_bytes(), t.as_bytes()]);
                }
                4 => {
                    // The newest request answered with the fuzzer's payload.
                    let ty_choice = s.u8();
                    let n = usize::from(s.u8());
                    let payload = s.take(n);
                    let (ty, id) = self.requests.last().copied().unwrap_or((msg::READ, 1));
                    let ty = if ty_choice < 200 {
                        ty
                    } else {
                        u32::from(ty_choice % 30)
                    };
                    self.out.clear();
                    self.send_raw(ty, id, &payload);
                }
                5 => {
                    let v = s.u32();
                    let _ = mem.write_u32(page::RSP_PROD, v);
                    return;
                }
                6 => {
                    let v = s.u32();
                    let _ = mem.write_u32(page::REQ_CONS, v);
                }
                7 => chunk = usize::from(s.u8() % 32),
                8 => {
                    // An error reply with the fuzzer's errno name.
                    let name = s.string();
                    let (_, id) = self.requests.last().copied().unwrap_or((msg::READ, 1));
                    self.out.clear();
                    self.error(id, &name);
                }
                9 => self.out.clear(),
                _ => {}
            }
        }
        self.put_replies(mem, chunk);
    }

    fn take_requests(&mut self, mem: &SharedMem) {
        let (Ok(mut cons), Ok(prod)) = (mem.read_u32(page::REQ_CONS), mem.read_u32(page::REQ_PROD))
        else {
            return;
        };
        // At most a ring's worth, whatever the indices say.
        for _ in 0..RING_SIZE {
            if cons == prod {
                break;
            }
            if let Ok(b) = mem.read_u8(page::REQ + (cons % RING_SIZE) as usize) {
                self.inbuf.push(b);
            }
            cons = cons.wrapping_add(1);
        }
        let _ = mem.write_u32(page::REQ_CONS, cons);
        while self.inbuf.len() >= HEADER_SIZE {
            let mut hb = [0; HEADER_SIZE];
            hb.copy_from_slice(&self.inbuf[..HEADER_SIZE]);
            let h = Header::from_bytes(&hb);
            let len = h.len as usize;
            if self.inbuf.len() < HEADER_SIZE + len {
                break;
            }
            let payload: Vec<u8> = self
                .inbuf
                .drain(..HEADER_SIZE + len)
                .skip(HEADER_SIZE)
                .collect();
            self.requests.push((h.ty, h.req_id));
            if self.requests.len() > 64 {
                self.requests.remove(0);
            }
            self.handle(h, &payload);
        }
    }

    fn put_replies(&mut self, mem: &SharedMem, chunk: usize) {
        let (Ok(prod), Ok(cons)) = (mem.read_u32(page::RSP_PROD), mem.read_u32(page::RSP_CONS))
        else {
            return;
        };
        let room = RING_SIZE.saturating_sub(prod.wrapping_sub(cons)) as usize;
        let n = room.min(self.out.len()).min(chunk);
        for i in 0..n {
            let b = self.out.pop_front().unwrap_or(0);
            let _ = mem.write_u8(
                page::RSP + (prod.wrapping_add(i as u32) % RING_SIZE) as usize,
                b,
            );
        }
        let _ = mem.write_u32(page::RSP_PROD, prod.wrapping_add(n as u32));
    }
}

/// The host: a clock that moves 1 ms per relax, pages with small fake frame numbers (grant
/// entries v1 hold 32-bit frames; host heap addresses do not fit), a grant table, the
/// xenstore page and its server, stepped at every relax.
#[derive(Debug)]
pub struct Host {
    clock: AtomicU64,
    next_gfn: AtomicU64,
    next_port: AtomicU32,
    grants: GrantTable,
    /// Pages by frame number, and the allocations behind them.
    pages: Mutex<HashMap<u64, SharedMem>>,
    backing: Mutex<Vec<SharedMem>>,
    /// The xenstore interface page.
    pub store_page: SharedMem,
    /// xenstored.
    pub server: Mutex<Server>,
}

impl Host {
    /// A host whose xenstored serves `server`.
    pub fn new(server: Server) -> Host {
        Host {
            clock: AtomicU64::new(0),
            next_gfn: AtomicU64::new(0x1000),
            next_port: AtomicU32::new(STORE_PORT + 1),
            grants: GrantTable::new(SharedMem::alloc(1).expect("a page for the grant table")),
            pages: Mutex::new(HashMap::new()),
            backing: Mutex::new(Vec::new()),
            store_page: SharedMem::alloc(1).expect("a page for xenstore"),
            server: Mutex::new(server),
        }
    }

    /// The page with frame number `gfn`, if allocated here.
    pub fn lookup(&self, gfn: u64) -> Option<SharedMem> {
        self.pages.lock().ok()?.get(&gfn).cloned()
    }

    /// One step of xenstored.
    pub fn step_store(&self) {
        if let Ok(mut s) = self.server.lock() {
            s.step(&self.store_page);
        }
    }
}

impl XenHost for Host {
    fn evtchn_alloc_unbound(&self, _remote_domid: u16) -> Result<u32, XenError> {
        Ok(self.next_port.fetch_add(1, Ordering::Relaxed))
    }

    fn evtchn_send(&self, _port: u32) {}

    fn evtchn_close(&self, _port: u32) {}

    fn alloc_shared_pages(&self, count: usize) -> Option<SharedMem> {
        let backing = SharedMem::alloc(count)?;
        let gfn = self.next_gfn.fetch_add(count as u64, Ordering::Relaxed);
        let ptr = NonNull::new(backing.addr() as *mut u8)?;
        // SAFETY: the memory is `backing`'s: mapped, page-aligned, used only through
        // `SharedMem` handles; `backing` is kept in `self.backing` for as long as the host
        // lives, and every handle is dropped before the host (the harnesses drop the drivers,
        // which hold the host, first). The frame number is fake but consistent: only this
        // host resolves it (`lookup`).
        let mem = unsafe { SharedMem::new(ptr, backing.len(), gfn) };
        if let Ok(mut b) = self.backing.lock() {
            b.push(backing);
        }
        if let Ok(mut pages) = self.pages.lock() {
            for i in 0..count {
                if let Ok(p) = mem.page(i) {
                    pages.insert(gfn + i as u64, p);
                }
            }
        }
        Some(mem)
    }

    fn free_shared_pages(&self, _mem: SharedMem) {
        // Kept until the host goes (a simulated back end may still look at them).
    }

    fn grant_table(&self) -> &GrantTable {
        &self.grants
    }

    fn now_ns(&self) -> u64 {
        self.clock.load(Ordering::Relaxed)
    }

    fn relax(&self) {
        self.clock.fetch_add(1_000_000, Ordering::Relaxed);
        self.step_store();
    }
}
