//! Host-test doubles: a [`XenHost`] with a fake clock, a page registry (so simulated back ends
//! can resolve grants to pages) and a simulated xenstored answering through the real
//! interface page layout.

use super::grant::GrantTable;
use super::xenstore::{HEADER_SIZE, Header, RING_SIZE, XenStore, msg, page};
use super::{SharedMem, XenError, XenHost};
use std::boxed::Box;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::format;
use std::string::{String, ToString};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::vec::Vec;

/// The xenstore event channel of the test host.
pub(crate) const STORE_PORT: u32 = 1;
/// Our domain id in the simulated store.
pub(crate) const DOMID: u16 = 1;

type Hook = Box<dyn FnMut(&TestHost) + Send>;
/// An open transaction: its view of the tree, the generation it started at, the paths it changed.
type OpenTx = (BTreeMap<String, String>, u64, Vec<String>);

pub(crate) struct TestHost {
    clock: AtomicU64,
    /// Frame numbers handed out (fake: they only key the page registry).
    next_gfn: AtomicU64,
    grants: GrantTable,
    pages: Mutex<HashMap<u64, SharedMem>>,
    next_port: AtomicU32,
    pub(crate) sent: Mutex<Vec<u32>>,
    pub(crate) closed: Mutex<Vec<u32>>,
    /// Pages still allocatable (`None`: unlimited).
    pub(crate) page_budget: Mutex<Option<usize>>,
    pub(crate) evtchn_fails: AtomicBool,
    pub(crate) store: Arc<Mutex<SimStore>>,
    pub(crate) store_page: SharedMem,
    hooks: Mutex<Vec<Hook>>,
}

impl TestHost {
    pub(crate) fn new() -> Arc<TestHost> {
        Arc::new(TestHost {
            clock: AtomicU64::new(0),
            next_gfn: AtomicU64::new(0x1000),
            grants: GrantTable::new(SharedMem::alloc(1).unwrap()),
            pages: Mutex::new(HashMap::new()),
            next_port: AtomicU32::new(STORE_PORT + 1),
            sent: Mutex::new(Vec::new()),
            closed: Mutex::new(Vec::new()),
            page_budget: Mutex::new(None),
            evtchn_fails: AtomicBool::new(false),
            store: Arc::new(Mutex::new(SimStore::new())),
            store_page: SharedMem::alloc(1).unwrap(),
            hooks: Mutex::new(Vec::new()),
        })
    }

    /// A client over the simulated xenstored, with a 100 ms deadline (100 relaxes).
    pub(crate) fn xenstore(self: &Arc<Self>) -> Arc<XenStore> {
        let host: Arc<dyn XenHost> = self.clone();
        Arc::new(
            XenStore::new(host, self.store_page.clone(), STORE_PORT)
                .unwrap()
                .with_timeout_ns(100_000_000),
        )
    }

    /// Runs `f` at every relax (after xenstored's step).
    pub(crate) fn add_hook(&self, f: impl FnMut(&TestHost) + Send + 'static) {
        self.hooks.lock().unwrap().push(Box::new(f));
    }

    pub(crate) fn step_store(&self) {
        self.store.lock().unwrap().step(&self.store_page);
    }

    /// The page with frame `gfn`, if it was allocated here.
    pub(crate) fn lookup(&self, gfn: u64) -> Option<SharedMem> {
        self.pages.lock().unwrap().get(&gfn).cloned()
    }

    pub(crate) fn pages_allocated(&self) -> usize {
        self.pages.lock().unwrap().len()
    }

    pub(crate) fn sent_to(&self, port: u32) -> usize {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|&&p| p == port)
            .count()
    }
}

impl XenHost for TestHost {
    fn evtchn_alloc_unbound(&self, _remote_domid: u16) -> Result<u32, XenError> {
        if self.evtchn_fails.load(Ordering::Relaxed) {
            return Err(XenError::Hypercall {
                op: "EVTCHNOP_alloc_unbound",
                code: -28,
            });
        }
        Ok(self.next_port.fetch_add(1, Ordering::Relaxed))
    }
    fn evtchn_send(&self, port: u32) {
        self.sent.lock().unwrap().push(port);
    }
    fn evtchn_close(&self, port: u32) {
        self.closed.lock().unwrap().push(port);
    }
    fn alloc_shared_pages(&self, count: usize) -> Option<SharedMem> {
        {
            let mut budget = self.page_budget.lock().unwrap();
            if let Some(b) = budget.as_mut() {
                *b = b.checked_sub(count)?;
            }
        }
        let gfn = self.next_gfn.fetch_add(count as u64, Ordering::Relaxed);
        let mem = SharedMem::alloc(count)?.with_gfn(gfn);
        let mut pages = self.pages.lock().unwrap();
        for i in 0..count {
            pages.insert(mem.gfn() + i as u64, mem.page(i).unwrap());
        }
        Some(mem)
    }
    fn free_shared_pages(&self, mem: SharedMem) {
        let mut pages = self.pages.lock().unwrap();
        for i in 0..mem.len() / 4096 {
            pages.remove(&(mem.gfn() + i as u64));
        }
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
        let mut hooks = self.hooks.lock().unwrap();
        for h in hooks.iter_mut() {
            h(self);
        }
    }
}

/// A simulated xenstored: a tree of values, watches, transactions, errors, and knobs for
/// misbehaviour.
pub(crate) struct SimStore {
    pub(crate) tree: BTreeMap<String, String>,
    watches: Vec<(String, String, String)>,
    txs: HashMap<u32, OpenTx>,
    next_tx: u32,
    generation: u64,
    /// Commits that fail with EAGAIN before one succeeds.
    pub(crate) force_eagain: u32,
    /// Consume requests but never answer.
    pub(crate) silent: bool,
    /// Do not even consume requests.
    pub(crate) frozen: bool,
    /// Most reply bytes written per step.
    pub(crate) chunk: usize,
    /// Absolute prefixes we may not write (EACCES).
    pub(crate) readonly: Vec<String>,
    /// Watch events are lost instead of sent (counted in `events_lost`).
    pub(crate) lose_events: bool,
    pub(crate) events_lost: usize,
    /// Most watches at once (more: E2BIG, as xenstored's quota).
    pub(crate) max_watches: usize,
    inbuf: Vec<u8>,
    pub(crate) out: VecDeque<u8>,
    /// Every request handled: type and first argument.
    pub(crate) log: Vec<(u32, String)>,
}

fn under(path: &str, prefix: &str) -> bool {
    path == prefix || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

impl SimStore {
    fn new() -> SimStore {
        let mut tree = BTreeMap::new();
        for p in [
            "/local",
            "/local/domain",
            "/local/domain/1",
            "/local/domain/0",
        ] {
            tree.insert(p.to_string(), String::new());
        }
        SimStore {
            tree,
            watches: Vec::new(),
            txs: HashMap::new(),
            next_tx: 1,
            generation: 0,
            force_eagain: 0,
            silent: false,
            frozen: false,
            chunk: usize::MAX,
            readonly: Vec::new(),
            lose_events: false,
            events_lost: 0,
            max_watches: usize::MAX,
            inbuf: Vec::new(),
            out: VecDeque::new(),
            log: Vec::new(),
        }
    }

    pub(crate) fn abs(path: &str) -> String {
        if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/local/domain/{DOMID}/{path}")
        }
    }

    /// Sets a value directly (as another domain would), firing watches.
    pub(crate) fn set(&mut self, path: &str, value: &str) {
        let p = Self::abs(path);
        Self::insert(&mut self.tree, &p, value);
        self.generation += 1;
        self.fire(&p, false);
    }

    pub(crate) fn get(&self, path: &str) -> Option<String> {
        self.tree.get(&Self::abs(path)).cloned()
    }

    pub(crate) fn remove(&mut self, path: &str) {
        let p = Self::abs(path);
        self.tree.retain(|k, _| !under(k, &p));
        self.generation += 1;
        self.fire(&p, true);
    }

    fn insert(tree: &mut BTreeMap<String, String>, p: &str, value: &str) {
        let mut at = 0;
        while let Some(i) = p[at + 1..].find('/') {
            at += 1 + i;
            tree.entry(p[..at].to_string()).or_default();
        }
        tree.insert(p.to_string(), value.to_string());
    }

    fn fire(&mut self, changed: &str, removed: bool) {
        let mut events = Vec::new();
        for (given, abs, token) in &self.watches {
            let path = if under(changed, abs) {
                changed.to_string()
            } else if removed && under(abs, changed) {
                abs.clone()
            } else {
                continue;
            };
            let shown = if given.starts_with('/') {
                path
            } else {
                path[format!("/local/domain/{DOMID}/").len()..].to_string()
            };
            events.push((shown, token.clone()));
        }
        for (path, token) in events {
            self.send_event(&path, &token);
        }
    }

    /// The watches set: path as given and token.
    pub(crate) fn watches(&self) -> Vec<(String, String)> {
        self.watches
            .iter()
            .map(|(given, _, token)| (given.clone(), token.clone()))
            .collect()
    }

    /// Requests of type `ty` handled about `path` (as sent).
    pub(crate) fn requests(&self, ty: u32, path: &str) -> usize {
        self.log
            .iter()
            .filter(|(t, p)| *t == ty && p == path)
            .count()
    }

    fn send_event(&mut self, path: &str, token: &str) {
        if self.lose_events {
            self.events_lost += 1;
            return;
        }
        let mut p = path.as_bytes().to_vec();
        p.push(0);
        p.extend_from_slice(token.as_bytes());
        p.push(0);
        self.send(msg::WATCH_EVENT, 0, 0, &p);
    }

    pub(crate) fn send(&mut self, ty: u32, req_id: u32, tx_id: u32, payload: &[u8]) {
        let h = Header {
            ty,
            req_id,
            tx_id,
            len: payload.len() as u32,
        };
        self.out.extend(h.to_bytes());
        self.out.extend(payload);
    }

    fn step(&mut self, page: &SharedMem) {
        if self.frozen {
            return;
        }
        let mut cons = page.read_u32(page::REQ_CONS).unwrap();
        let prod = page.read_u32(page::REQ_PROD).unwrap();
        while cons != prod {
            self.inbuf.push(
                page.read_u8(page::REQ + (cons % RING_SIZE) as usize)
                    .unwrap(),
            );
            cons = cons.wrapping_add(1);
        }
        page.write_u32(page::REQ_CONS, cons).unwrap();
        while self.inbuf.len() >= HEADER_SIZE {
            let h = Header::from_bytes(self.inbuf[..HEADER_SIZE].try_into().unwrap());
            if self.inbuf.len() < HEADER_SIZE + h.len as usize {
                break;
            }
            let payload: Vec<u8> = self
                .inbuf
                .drain(..HEADER_SIZE + h.len as usize)
                .skip(HEADER_SIZE)
                .collect();
            if !self.silent {
                self.handle(h, &payload);
            }
        }
        let prod = page.read_u32(page::RSP_PROD).unwrap();
        let cons = page.read_u32(page::RSP_CONS).unwrap();
        let room = (RING_SIZE - prod.wrapping_sub(cons)) as usize;
        let n = room.min(self.out.len()).min(self.chunk);
        for i in 0..n {
            let b = self.out.pop_front().unwrap();
            page.write_u8(
                page::RSP + (prod.wrapping_add(i as u32) % RING_SIZE) as usize,
                b,
            )
            .unwrap();
        }
        page.write_u32(page::RSP_PROD, prod.wrapping_add(n as u32))
            .unwrap();
    }

    fn handle(&mut self, h: Header, payload: &[u8]) {
        let args: Vec<String> = payload
            .split(|&b| b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        let arg0 = args.first().cloned().unwrap_or_default();
        self.log.push((h.ty, arg0.clone()));
        let path = Self::abs(&arg0);
        let ok = |s: &mut Self| s.send(h.ty, h.req_id, h.tx_id, b"OK\0");
        let err = |s: &mut Self, e: &str| {
            let mut p = e.as_bytes().to_vec();
            p.push(0);
            s.send(msg::ERROR, h.req_id, h.tx_id, &p);
        };
        if h.tx_id != 0 && !self.txs.contains_key(&h.tx_id) {
            return err(self, "ENOENT");
        }
        let valid = path.len() > 1 && !path.ends_with('/') && !path.contains("//");
        let writes = matches!(h.ty, msg::WRITE | msg::MKDIR | msg::RM);
        if matches!(h.ty, msg::READ | msg::DIRECTORY | msg::WATCH | msg::UNWATCH) || writes {
            if !valid {
                return err(self, "EINVAL");
            }
            if writes && self.readonly.iter().any(|r| under(&path, r)) {
                return err(self, "EACCES");
            }
        }
        let tx = h.tx_id;
        match h.ty {
            msg::READ => {
                let v = self.view(tx).get(&path).cloned();
                match v {
                    Some(v) => self.send(h.ty, h.req_id, tx, v.as_bytes()),
                    None => err(self, "ENOENT"),
                }
            }
            msg::DIRECTORY => {
                let view = self.view(tx);
                if !view.contains_key(&path) {
                    return err(self, "ENOENT");
                }
                let prefix = format!("{path}/");
                let mut p = Vec::new();
                for k in view
                    .keys()
                    .filter(|k| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
                {
                    p.extend_from_slice(&k.as_bytes()[prefix.len()..]);
                    p.push(0);
                }
                self.send(h.ty, h.req_id, tx, &p);
            }
            msg::WRITE | msg::MKDIR => {
                let value = if h.ty == msg::WRITE {
                    let at = payload
                        .iter()
                        .position(|&b| b == 0)
                        .map_or(payload.len(), |i| i + 1);
                    String::from_utf8_lossy(&payload[at..]).into_owned()
                } else {
                    self.view(tx).get(&path).cloned().unwrap_or_default()
                };
                self.change(tx, &path, Some(&value));
                ok(self);
            }
            msg::RM => {
                if !self.view(tx).contains_key(&path) {
                    return err(self, "ENOENT");
                }
                self.change(tx, &path, None);
                ok(self);
            }
            msg::WATCH => {
                let token = args.get(1).cloned().unwrap_or_default();
                if self
                    .watches
                    .iter()
                    .any(|(g, _, t)| *g == arg0 && *t == token)
                {
                    return err(self, "EEXIST");
                }
                if self.watches.len() >= self.max_watches {
                    return err(self, "E2BIG");
                }
                self.watches.push((arg0.clone(), path, token.clone()));
                ok(self);
                self.send_event(&arg0, &token);
            }
            msg::UNWATCH => {
                let token = args.get(1).cloned().unwrap_or_default();
                let before = self.watches.len();
                self.watches
                    .retain(|(g, _, t)| !(*g == arg0 && *t == token));
                if self.watches.len() == before {
                    return err(self, "ENOENT");
                }
                ok(self);
            }
            msg::TRANSACTION_START => {
                let id = self.next_tx;
                self.next_tx += 1;
                self.txs
                    .insert(id, (self.tree.clone(), self.generation, Vec::new()));
                self.send(h.ty, h.req_id, 0, format!("{id}\0").as_bytes());
            }
            msg::TRANSACTION_END => {
                let Some((snapshot, generation, changed)) = self.txs.remove(&tx) else {
                    return err(self, "ENOENT");
                };
                if arg0 == "T" {
                    if self.force_eagain > 0 || generation != self.generation {
                        self.force_eagain = self.force_eagain.saturating_sub(1);
                        return err(self, "EAGAIN");
                    }
                    self.tree = snapshot;
                    self.generation += 1;
                    for c in changed {
                        self.fire(&c, false);
                    }
                }
                ok(self);
            }
            msg::GET_DOMAIN_PATH => {
                self.send(
                    h.ty,
                    h.req_id,
                    0,
                    format!("/local/domain/{arg0}\0").as_bytes(),
                );
            }
            _ => err(self, "EINVAL"),
        }
    }

    fn view(&self, tx: u32) -> &BTreeMap<String, String> {
        match self.txs.get(&tx) {
            Some((snapshot, _, _)) if tx != 0 => snapshot,
            _ => &self.tree,
        }
    }

    fn change(&mut self, tx: u32, path: &str, value: Option<&str>) {
        if tx != 0 {
            let (snapshot, _, changed) = self.txs.get_mut(&tx).unwrap();
            match value {
                Some(v) => Self::insert(snapshot, path, v),
                None => snapshot.retain(|k, _| !under(k, path)),
            }
            changed.push(path.to_string());
            return;
        }
        match value {
            Some(v) => {
                Self::insert(&mut self.tree, path, v);
                self.generation += 1;
                self.fire(path, false);
            }
            None => {
                self.tree.retain(|k, _| !under(k, path));
                self.generation += 1;
                self.fire(path, true);
            }
        }
    }
}
