//! The xenstore protocol (`io/xs_wire.h`) and a client over the domain's interface page.
//!
//! xenstored keeps a tree of string values (`/local/domain/<id>/device/vif/0/state`, …) that
//! front ends and back ends use to meet. A guest reaches it through one shared page and one
//! event channel, both set up by the toolstack and found by the board:
//!
//! ```text
//!  0     req[1024]   requests, a byte ring we produce
//!  1024  rsp[1024]   replies and watch events, a byte ring xenstored produces
//!  2048  req_cons, req_prod, rsp_cons, rsp_prod   (u32 each, free-running)
//!  2064  server_features   2068 connection   2072 error
//! ```
//!
//! A message is a 16-byte header — `type`, `req_id`, `tx_id`, `len` (`u32` each) — and `len`
//! (≤ 4096) payload bytes, written into the ring in as many pieces as space allows. Each
//! request gets a reply of the same type (or `XS_ERROR` with an errno name such as `ENOENT`)
//! with the same `req_id`; `XS_WATCH_EVENT`s arrive in between, at any time.
//!
//! [`XenStore`] sends one request at a time and waits for its reply with a deadline (the
//! board's [`XenHost::now_ns`]/[`XenHost::relax`]); watch events read meanwhile are queued
//! ([`XenStore::take_watch_event`], or [`XenStore::take_watch_event_for`] for one watch's
//! token so that other watches' events stay queued; [`XenStore::unique_token`] makes such
//! tokens; [`XenStore::unwatch`] drops the watch's events still queued). A request that timed
//! out is *abandoned*: its late reply is recognised by its `req_id` and dropped. The byte
//! streams survive timeouts: half-written requests are finished and half-read messages
//! completed by the next call.
//!
//! Everything xenstored writes is validated: ring indices that moved backwards or by more than
//! the ring, a payload longer than 4096 bytes, an unknown message type, a reply to a `req_id`
//! never sent, a reply of the wrong type, malformed payloads (directory listings that are not
//! NUL-terminated UTF-8 names, transaction ids that are not numbers). Each is a
//! [`XenError::Protocol`] naming it; the two that lose track of where messages begin (bad
//! indices, oversized payloads) leave the connection unusable, and every later call says so.
//!
//! Locking: the connection is behind a [`TryLock`] (the client is shared by the bus and the
//! drivers), acquired against the same deadline, never in interrupt context, with nothing else
//! locked while held.

use super::shared::{TryLock, TryLockGuard, mb, rmb, wmb};
use super::{SharedMem, XenError, XenHost};
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

/// Message types (`enum xsd_sockmsg_type`).
pub mod msg {
    /// `XS_CONTROL` (was `XS_DEBUG`).
    pub const CONTROL: u32 = 0;
    /// List a node's children.
    pub const DIRECTORY: u32 = 1;
    /// Read a value.
    pub const READ: u32 = 2;
    /// Read permissions.
    pub const GET_PERMS: u32 = 3;
    /// Register a watch.
    pub const WATCH: u32 = 4;
    /// Remove a watch.
    pub const UNWATCH: u32 = 5;
    /// Start a transaction.
    pub const TRANSACTION_START: u32 = 6;
    /// Commit or abort a transaction.
    pub const TRANSACTION_END: u32 = 7;
    /// Toolstack only.
    pub const INTRODUCE: u32 = 8;
    /// Toolstack only.
    pub const RELEASE: u32 = 9;
    /// A domain's home path.
    pub const GET_DOMAIN_PATH: u32 = 10;
    /// Write a value.
    pub const WRITE: u32 = 11;
    /// Create a node.
    pub const MKDIR: u32 = 12;
    /// Remove a node and its children.
    pub const RM: u32 = 13;
    /// Set permissions.
    pub const SET_PERMS: u32 = 14;
    /// A watch fired (xenstored → client).
    pub const WATCH_EVENT: u32 = 15;
    /// An error reply.
    pub const ERROR: u32 = 16;
    /// Toolstack only.
    pub const IS_DOMAIN_INTRODUCED: u32 = 17;
    /// Toolstack only.
    pub const RESUME: u32 = 18;
    /// Toolstack only.
    pub const SET_TARGET: u32 = 19;
    /// (20 was `XS_RESTRICT`, removed.) Remove all of the connection's watches.
    pub const RESET_WATCHES: u32 = 21;
    /// Part of a large directory.
    pub const DIRECTORY_PART: u32 = 22;
    /// Feature query.
    pub const GET_FEATURE: u32 = 23;
    /// Feature setting.
    pub const SET_FEATURE: u32 = 24;
    /// Quota query.
    pub const GET_QUOTA: u32 = 25;
    /// Quota setting.
    pub const SET_QUOTA: u32 = 26;

    /// Whether `t` is a type of the protocol.
    pub fn is_known(t: u32) -> bool {
        t <= SET_QUOTA && t != 20
    }
}

/// Largest payload of a message (`XENSTORE_PAYLOAD_MAX`).
pub const PAYLOAD_MAX: usize = 4096;
/// Bytes of a message header.
pub const HEADER_SIZE: usize = 16;
/// Bytes of each byte ring (`XENSTORE_RING_SIZE`).
pub const RING_SIZE: u32 = 1024;

/// Offsets in the interface page (`struct xenstore_domain_interface`).
pub mod page {
    /// The request ring.
    pub const REQ: usize = 0;
    /// The reply ring.
    pub const RSP: usize = 1024;
    /// Requests consumed by xenstored.
    pub const REQ_CONS: usize = 2048;
    /// Requests produced by us.
    pub const REQ_PROD: usize = 2052;
    /// Replies consumed by us.
    pub const RSP_CONS: usize = 2056;
    /// Replies produced by xenstored.
    pub const RSP_PROD: usize = 2060;
    /// Features of the server.
    pub const SERVER_FEATURES: usize = 2064;
    /// Connection state (0 connected, 1 reconnecting).
    pub const CONNECTION: usize = 2068;
    /// Error indicator.
    pub const ERROR: usize = 2072;
    /// Bytes of the interface the client uses.
    pub const SIZE: usize = 2076;
}

/// A message header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Header {
    /// A [`msg`] type.
    pub ty: u32,
    /// Request id, echoed by the reply.
    pub req_id: u32,
    /// Transaction id (0: none).
    pub tx_id: u32,
    /// Payload bytes.
    pub len: u32,
}

impl Header {
    /// The wire form (native-endian, as the C struct).
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0; HEADER_SIZE];
        for (i, v) in [self.ty, self.req_id, self.tx_id, self.len]
            .into_iter()
            .enumerate()
        {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }

    /// Parses the wire form.
    pub fn from_bytes(b: &[u8; HEADER_SIZE]) -> Header {
        let w = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Header {
            ty: w(0),
            req_id: w(4),
            tx_id: w(8),
            len: w(12),
        }
    }
}

/// A transaction id; [`Tx::NONE`] for operations outside transactions.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Tx(pub u32);

impl Tx {
    /// No transaction.
    pub const NONE: Tx = Tx(0);
}

/// Errors xenstored names in `XS_ERROR` replies (`xsd_errors`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum XsErrno {
    /// Invalid argument.
    Einval,
    /// Permission denied.
    Eacces,
    /// Already exists.
    Eexist,
    /// Is a directory.
    Eisdir,
    /// No such node.
    Enoent,
    /// Out of memory.
    Enomem,
    /// Out of space (quota).
    Enospc,
    /// I/O error.
    Eio,
    /// Directory not empty.
    Enotempty,
    /// Not implemented.
    Enosys,
    /// Read-only.
    Erofs,
    /// Busy.
    Ebusy,
    /// Try again (a transaction conflicted).
    Eagain,
    /// Already connected.
    Eisconn,
    /// Too big.
    E2big,
    /// Not permitted.
    Eperm,
    /// A name not in the list (kept, truncated to 32 bytes).
    Other(String),
}

impl XsErrno {
    const NAMES: [(&'static str, XsErrno); 16] = [
        ("EINVAL", XsErrno::Einval),
        ("EACCES", XsErrno::Eacces),
        ("EEXIST", XsErrno::Eexist),
        ("EISDIR", XsErrno::Eisdir),
        ("ENOENT", XsErrno::Enoent),
        ("ENOMEM", XsErrno::Enomem),
        ("ENOSPC", XsErrno::Enospc),
        ("EIO", XsErrno::Eio),
        ("ENOTEMPTY", XsErrno::Enotempty),
        ("ENOSYS", XsErrno::Enosys),
        ("EROFS", XsErrno::Erofs),
        ("EBUSY", XsErrno::Ebusy),
        ("EAGAIN", XsErrno::Eagain),
        ("EISCONN", XsErrno::Eisconn),
        ("E2BIG", XsErrno::E2big),
        ("EPERM", XsErrno::Eperm),
    ];

    /// The errno for a name as xenstored sends it.
    pub fn from_name(name: &str) -> XsErrno {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, e)| e.clone())
            .unwrap_or_else(|| XsErrno::Other(name.chars().take(32).collect()))
    }

    /// The name xenstored uses.
    pub fn name(&self) -> &str {
        match self {
            XsErrno::Other(n) => n,
            e => Self::NAMES
                .iter()
                .find(|(_, x)| x == e)
                .map_or("?", |(n, _)| n),
        }
    }
}

impl core::fmt::Display for XsErrno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A watch that fired: the path that changed (or the watched path, when the watch is set) and
/// the token given to [`XenStore::watch`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct WatchEvent {
    /// The node.
    pub path: String,
    /// The watch's token.
    pub token: String,
}

/// Watch events kept before the oldest are dropped.
pub const MAX_QUEUED_EVENTS: usize = 256;
/// Timed-out request ids remembered (their late replies are dropped).
const MAX_ABANDONED: usize = 32;

/// The connection state behind the lock.
struct Conn {
    page: SharedMem,
    /// Our request producer (the shared copy is ours too, but not trusted).
    req_prod: u32,
    /// The request consumer last seen.
    req_cons_seen: u32,
    /// Our reply consumer.
    rsp_cons: u32,
    /// The reply producer last seen.
    rsp_prod_seen: u32,
    /// Request bytes not yet in the ring.
    out: VecDeque<u8>,
    /// Bytes of the message being read.
    inbuf: Vec<u8>,
    next_req_id: u32,
    abandoned: VecDeque<u32>,
    events: VecDeque<WatchEvent>,
    events_dropped: u64,
    /// Set when the byte stream can no longer be trusted.
    broken: Option<String>,
}

/// A whole message read from xenstored.
struct Message {
    header: Header,
    payload: Vec<u8>,
}

impl Conn {
    fn fail(&mut self, what: String) -> XenError {
        self.broken = Some(what.clone());
        XenError::Protocol(what)
    }

    /// Moves queued request bytes into the ring; returns how many.
    fn pump_out(&mut self) -> Result<usize, XenError> {
        if self.out.is_empty() {
            return Ok(0);
        }
        let cons = self.page.read_u32(page::REQ_CONS)?;
        let in_ring = self.req_prod.wrapping_sub(cons);
        let consumed = cons.wrapping_sub(self.req_cons_seen);
        if in_ring > RING_SIZE || consumed > self.req_prod.wrapping_sub(self.req_cons_seen) {
            return Err(self.fail(format!(
                "xenstore: request consumer index {cons} moved backwards or past the producer {} (last seen {})",
                self.req_prod, self.req_cons_seen
            )));
        }
        self.req_cons_seen = cons;
        // The consumer's index is read before we overwrite the space it freed.
        mb();
        let room = (RING_SIZE - in_ring) as usize;
        let n = room.min(self.out.len());
        for i in 0..n {
            let at = page::REQ + (self.req_prod.wrapping_add(i as u32) % RING_SIZE) as usize;
            let byte = self.out.pop_front().unwrap_or(0);
            self.page.write_u8(at, byte)?;
        }
        if n > 0 {
            // The bytes before the index that publishes them.
            wmb();
            self.req_prod = self.req_prod.wrapping_add(n as u32);
            self.page.write_u32(page::REQ_PROD, self.req_prod)?;
        }
        Ok(n)
    }

    /// Reads available reply bytes towards the next message; returns it when complete and
    /// whether any bytes were consumed.
    fn pump_in(&mut self) -> Result<(Option<Message>, bool), XenError> {
        let prod = self.page.read_u32(page::RSP_PROD)?;
        let avail = prod.wrapping_sub(self.rsp_cons);
        if avail > RING_SIZE || avail < self.rsp_prod_seen.wrapping_sub(self.rsp_cons) {
            return Err(self.fail(format!(
                "xenstore: reply producer index {prod} moved backwards or more than the ring past the consumer {} (last seen {})",
                self.rsp_cons, self.rsp_prod_seen
            )));
        }
        self.rsp_prod_seen = prod;
        // The bytes after the index that published them.
        rmb();
        let want = if self.inbuf.len() < HEADER_SIZE {
            HEADER_SIZE - self.inbuf.len()
        } else {
            HEADER_SIZE + self.header_len() - self.inbuf.len()
        };
        let n = want.min(avail as usize);
        for i in 0..n {
            let at = page::RSP + (self.rsp_cons.wrapping_add(i as u32) % RING_SIZE) as usize;
            self.inbuf.push(self.page.read_u8(at)?);
        }
        if n > 0 {
            // Our reads are done before xenstored may reuse the space.
            mb();
            self.rsp_cons = self.rsp_cons.wrapping_add(n as u32);
            self.page.write_u32(page::RSP_CONS, self.rsp_cons)?;
        }
        if self.inbuf.len() == HEADER_SIZE {
            let len = self.header_len();
            if len > PAYLOAD_MAX {
                return Err(self.fail(format!(
                    "xenstore: a message of {len} bytes (the limit is {PAYLOAD_MAX})"
                )));
            }
        }
        if self.inbuf.len() >= HEADER_SIZE && self.inbuf.len() == HEADER_SIZE + self.header_len() {
            let mut h = [0; HEADER_SIZE];
            h.copy_from_slice(&self.inbuf[..HEADER_SIZE]);
            let header = Header::from_bytes(&h);
            let payload = self.inbuf.split_off(HEADER_SIZE);
            self.inbuf.clear();
            return Ok((Some(Message { header, payload }), n > 0));
        }
        Ok((None, n > 0))
    }

    fn header_len(&self) -> usize {
        u32::from_ne_bytes([
            self.inbuf[12],
            self.inbuf[13],
            self.inbuf[14],
            self.inbuf[15],
        ]) as usize
    }

    fn queue_event(&mut self, m: &Message) -> Result<(), XenError> {
        let mut parts = m.payload.split(|&b| b == 0);
        let (Some(path), Some(token)) = (parts.next(), parts.next()) else {
            return Err(XenError::Protocol(
                "xenstore: a watch event without path and token".into(),
            ));
        };
        let (Ok(path), Ok(token)) = (core::str::from_utf8(path), core::str::from_utf8(token))
        else {
            return Err(XenError::Protocol(
                "xenstore: a watch event that is not UTF-8".into(),
            ));
        };
        if self.events.len() == MAX_QUEUED_EVENTS {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back(WatchEvent {
            path: path.to_string(),
            token: token.to_string(),
        });
        Ok(())
    }

    /// Handles a message that is not the reply awaited (`want`: the request id waited for).
    /// `Ok(Some)` is the reply.
    fn dispatch(
        &mut self,
        m: Message,
        want: Option<(u32, u32)>,
    ) -> Result<Option<Message>, XenError> {
        let h = m.header;
        if !msg::is_known(h.ty) {
            return Err(XenError::Protocol(format!(
                "xenstore: a message of unknown type {} (req_id {}, {} bytes)",
                h.ty, h.req_id, h.len
            )));
        }
        if h.ty == msg::WATCH_EVENT {
            self.queue_event(&m)?;
            return Ok(None);
        }
        if let Some(i) = self.abandoned.iter().position(|&id| id == h.req_id) {
            self.abandoned.remove(i);
            return Ok(None);
        }
        match want {
            Some((id, ty)) if id == h.req_id => {
                if h.ty != ty && h.ty != msg::ERROR {
                    return Err(XenError::Protocol(format!(
                        "xenstore: a reply of type {} to a request of type {ty}",
                        h.ty
                    )));
                }
                Ok(Some(m))
            }
            _ => Err(XenError::Protocol(format!(
                "xenstore: a reply to unknown req_id {} (type {})",
                h.req_id, h.ty
            ))),
        }
    }

    /// Drops the queued events of the watch on `path` with `token` (events name the path that
    /// changed, at or below the watched one, or above it when a parent was removed).
    fn discard_events(&mut self, path: &str, token: &str) {
        self.events
            .retain(|e| !(e.token == token && (under(&e.path, path) || under(path, &e.path))));
    }

    fn abandon(&mut self, id: u32) {
        if self.abandoned.len() == MAX_ABANDONED {
            self.abandoned.pop_front();
        }
        self.abandoned.push_back(id);
    }
}

/// Whether `path` is `prefix` or below it.
fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || (path.starts_with(prefix)
            && (prefix.ends_with('/') || path.as_bytes().get(prefix.len()) == Some(&b'/')))
}

/// A xenstore client over the domain interface page. Shared (`Arc`) by the bus and drivers;
/// every method takes `&self`.
pub struct XenStore {
    host: Arc<dyn XenHost>,
    port: u32,
    timeout_ns: u64,
    conn: TryLock<Conn>,
    /// Numbers [`unique_token`](Self::unique_token)s.
    next_token: AtomicU32,
}

impl core::fmt::Debug for XenStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "XenStore(port {}, timeout {} ms)",
            self.port,
            self.timeout_ns / 1_000_000
        )
    }
}

/// Default deadline of one xenstore operation.
pub const DEFAULT_TIMEOUT_NS: u64 = 5_000_000_000;

/// Paths must be non-empty, without NUL, at most this long (`XENSTORE_ABS_PATH_MAX`).
pub const PATH_MAX: usize = 3072;

fn check_path(op: &'static str, path: &str) -> Result<(), XenError> {
    if path.is_empty() || path.len() > PATH_MAX || path.contains('\0') {
        return Err(XenError::Invalid(format!(
            "xenstore {op}: path {:?} is empty, longer than {PATH_MAX} bytes or contains NUL",
            path.get(..64).unwrap_or(path)
        )));
    }
    Ok(())
}

fn with_nul(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in parts {
        v.extend_from_slice(p);
        v.push(0);
    }
    v
}

fn utf8(op: &'static str, path: &str, bytes: Vec<u8>) -> Result<String, XenError> {
    String::from_utf8(bytes)
        .map_err(|_| XenError::Protocol(format!("xenstore {op} {path:?}: the reply is not UTF-8")))
}

/// Parses a directory listing: names, each NUL-terminated, UTF-8, non-empty, without `/`.
pub fn parse_directory(payload: &[u8]) -> Result<Vec<String>, &'static str> {
    if payload.is_empty() {
        return Ok(Vec::new());
    }
    let Some((&0, body)) = payload.split_last() else {
        return Err("the listing does not end in NUL");
    };
    body.split(|&b| b == 0)
        .map(|name| match core::str::from_utf8(name) {
            Ok("") => Err("an empty name"),
            Ok(n) if n.contains('/') => Err("a name with '/'"),
            Ok(n) => Ok(n.to_string()),
            Err(_) => Err("a name that is not UTF-8"),
        })
        .collect()
}

impl XenStore {
    /// A client over the interface page `page` (mapped by the board) whose xenstored is
    /// notified through event channel `port`. Picks up the ring indices where they are (the
    /// page may have been used before) and validates them.
    pub fn new(host: Arc<dyn XenHost>, page: SharedMem, port: u32) -> Result<XenStore, XenError> {
        if page.len() < page::SIZE {
            return Err(XenError::Invalid(format!(
                "the xenstore interface needs {} bytes, the page has {}",
                page::SIZE,
                page.len()
            )));
        }
        let req_cons = page.read_u32(page::REQ_CONS)?;
        let req_prod = page.read_u32(page::REQ_PROD)?;
        let rsp_cons = page.read_u32(page::RSP_CONS)?;
        let rsp_prod = page.read_u32(page::RSP_PROD)?;
        if req_prod.wrapping_sub(req_cons) > RING_SIZE
            || rsp_prod.wrapping_sub(rsp_cons) > RING_SIZE
        {
            return Err(XenError::Protocol(format!(
                "xenstore: the interface's indices are inconsistent (req {req_cons}..{req_prod}, rsp {rsp_cons}..{rsp_prod})"
            )));
        }
        Ok(XenStore {
            host,
            port,
            timeout_ns: DEFAULT_TIMEOUT_NS,
            conn: TryLock::new(Conn {
                page,
                req_prod,
                req_cons_seen: req_cons,
                rsp_cons,
                rsp_prod_seen: rsp_cons,
                out: VecDeque::new(),
                inbuf: Vec::new(),
                next_req_id: 1,
                abandoned: VecDeque::new(),
                events: VecDeque::new(),
                events_dropped: 0,
                broken: None,
            }),
            next_token: AtomicU32::new(1),
        })
    }

    /// Sets the deadline of each operation.
    pub fn with_timeout_ns(mut self, timeout_ns: u64) -> Self {
        self.timeout_ns = timeout_ns;
        self
    }

    /// The deadline of each operation.
    pub fn timeout_ns(&self) -> u64 {
        self.timeout_ns
    }

    /// The board's services this client uses.
    pub fn host(&self) -> &Arc<dyn XenHost> {
        &self.host
    }

    /// Sends a request and waits for its reply's payload.
    fn request(
        &self,
        op: &'static str,
        path: &str,
        ty: u32,
        tx: Tx,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, XenError> {
        self.request_then(op, path, ty, tx, payload, |_| {})
    }

    /// [`request`](Self::request), running `then` on the connection once the exchange ended
    /// (replied, failed or timed out), before another thread can use it.
    fn request_then(
        &self,
        op: &'static str,
        path: &str,
        ty: u32,
        tx: Tx,
        payload: Vec<u8>,
        then: impl FnOnce(&mut Conn),
    ) -> Result<Vec<u8>, XenError> {
        if payload.len() > PAYLOAD_MAX {
            return Err(XenError::Invalid(format!(
                "xenstore {op} {path:?}: {} bytes of request (the limit is {PAYLOAD_MAX})",
                payload.len()
            )));
        }
        let deadline = self.host.now_ns().saturating_add(self.timeout_ns);
        let mut conn = self.lock(op, path, deadline)?;
        if let Some(why) = &conn.broken {
            let e = XenError::Protocol(format!(
                "xenstore {op} {path:?}: the connection is unusable after: {why}"
            ));
            then(&mut conn);
            return Err(e);
        }
        let id = conn.next_req_id;
        conn.next_req_id = conn.next_req_id.wrapping_add(1).max(1);
        let header = Header {
            ty,
            req_id: id,
            tx_id: tx.0,
            len: payload.len() as u32,
        };
        conn.out.extend(header.to_bytes());
        conn.out.extend(payload);
        let result = self.exchange(&mut conn, id, ty, deadline, op, path);
        if result.is_err() && conn.broken.is_none() {
            conn.abandon(id);
        }
        then(&mut conn);
        drop(conn);
        let reply = result?;
        if reply.header.ty == msg::ERROR {
            let name = reply.payload.split(|&b| b == 0).next().unwrap_or(&[]);
            let errno = XsErrno::from_name(core::str::from_utf8(name).unwrap_or("?"));
            return Err(XenError::Store {
                op,
                path: path.to_string(),
                errno,
            });
        }
        Ok(reply.payload)
    }

    /// The connection, once no other thread uses it (waiting until `deadline`).
    fn lock(
        &self,
        op: &'static str,
        path: &str,
        deadline: u64,
    ) -> Result<TryLockGuard<'_, Conn>, XenError> {
        let host = &*self.host;
        loop {
            if let Some(c) = self.conn.try_lock() {
                return Ok(c);
            }
            if host.now_ns() >= deadline {
                return Err(XenError::Timeout(format!(
                    "xenstore {op} {path:?}: the client stayed busy with another request"
                )));
            }
            host.relax();
        }
    }

    fn exchange(
        &self,
        conn: &mut Conn,
        id: u32,
        ty: u32,
        deadline: u64,
        op: &'static str,
        path: &str,
    ) -> Result<Message, XenError> {
        let host = &*self.host;
        loop {
            let mut progress = false;
            let sent = conn.pump_out()?;
            if sent > 0 {
                host.evtchn_send(self.port);
                progress = true;
            }
            loop {
                let (m, consumed) = conn.pump_in()?;
                if consumed {
                    // xenstored may be waiting for room in the reply ring.
                    host.evtchn_send(self.port);
                    progress = true;
                }
                match m {
                    Some(m) => {
                        if let Some(reply) = conn.dispatch(m, Some((id, ty)))? {
                            return Ok(reply);
                        }
                    }
                    None if consumed => {}
                    None => break,
                }
            }
            if !progress {
                if host.now_ns() >= deadline {
                    let stage = if conn.out.is_empty() {
                        "no reply from xenstored"
                    } else {
                        "xenstored is not consuming requests"
                    };
                    return Err(XenError::Timeout(format!(
                        "xenstore {op} {path:?}: {stage} within {} ms",
                        self.timeout_ns / 1_000_000
                    )));
                }
                host.relax();
            }
        }
    }

    /// Reads the value at `path`.
    pub fn read(&self, tx: Tx, path: &str) -> Result<String, XenError> {
        check_path("read", path)?;
        let v = self.request("read", path, msg::READ, tx, with_nul(&[path.as_bytes()]))?;
        utf8("read", path, v)
    }

    /// Reads the value at `path`; `None` if there is no such node.
    pub fn read_opt(&self, tx: Tx, path: &str) -> Result<Option<String>, XenError> {
        match self.read(tx, path) {
            Ok(v) => Ok(Some(v)),
            Err(XenError::Store {
                errno: XsErrno::Enoent,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `value` at `path` (creating the node and missing parents).
    pub fn write(&self, tx: Tx, path: &str, value: &str) -> Result<(), XenError> {
        check_path("write", path)?;
        let mut p = with_nul(&[path.as_bytes()]);
        p.extend_from_slice(value.as_bytes());
        self.request("write", path, msg::WRITE, tx, p).map(drop)
    }

    /// The names of `path`'s children.
    pub fn directory(&self, tx: Tx, path: &str) -> Result<Vec<String>, XenError> {
        check_path("directory", path)?;
        let v = self.request(
            "directory",
            path,
            msg::DIRECTORY,
            tx,
            with_nul(&[path.as_bytes()]),
        )?;
        parse_directory(&v)
            .map_err(|why| XenError::Protocol(format!("xenstore directory {path:?}: {why}")))
    }

    /// Creates the node `path` (empty value) if it does not exist.
    pub fn mkdir(&self, tx: Tx, path: &str) -> Result<(), XenError> {
        check_path("mkdir", path)?;
        self.request("mkdir", path, msg::MKDIR, tx, with_nul(&[path.as_bytes()]))
            .map(drop)
    }

    /// Removes the node `path` and its children.
    pub fn rm(&self, tx: Tx, path: &str) -> Result<(), XenError> {
        check_path("rm", path)?;
        self.request("rm", path, msg::RM, tx, with_nul(&[path.as_bytes()]))
            .map(drop)
    }

    /// Watches `path` and everything below it; events carry `token`. xenstored fires the watch
    /// once at once.
    pub fn watch(&self, path: &str, token: &str) -> Result<(), XenError> {
        check_path("watch", path)?;
        check_path("watch", token)?;
        let p = with_nul(&[path.as_bytes(), token.as_bytes()]);
        self.request("watch", path, msg::WATCH, Tx::NONE, p)
            .map(drop)
    }

    /// Removes a watch set with the same `path` and `token`, and drops its events still queued
    /// (those with `token` about `path`, a node below it or a removed parent), whether or not
    /// xenstored had the watch: nobody is left to take them.
    pub fn unwatch(&self, path: &str, token: &str) -> Result<(), XenError> {
        check_path("unwatch", path)?;
        check_path("unwatch", token)?;
        let p = with_nul(&[path.as_bytes(), token.as_bytes()]);
        // The watch's events before xenstored's reply were queued while waiting for it; none
        // come after it.
        self.request_then("unwatch", path, msg::UNWATCH, Tx::NONE, p, |c| {
            c.discard_events(path, token);
        })
        .map(drop)
    }

    /// A watch token no other call on this client returned: `prefix` and a number.
    pub fn unique_token(&self, prefix: &str) -> String {
        format!(
            "{prefix}{}",
            self.next_token.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The oldest queued watch event (`None` also while another thread is using the client:
    /// poll again).
    pub fn take_watch_event(&self) -> Option<WatchEvent> {
        self.conn.try_lock()?.events.pop_front()
    }

    /// The oldest queued watch event carrying `token`, leaving other watches' events queued
    /// (`None` also while another thread is using the client: poll again).
    pub fn take_watch_event_for(&self, token: &str) -> Option<WatchEvent> {
        let mut conn = self.conn.try_lock()?;
        let i = conn.events.iter().position(|e| e.token == token)?;
        conn.events.remove(i)
    }

    /// Watch events dropped because the queue was full.
    pub fn watch_events_dropped(&self) -> u64 {
        self.conn.try_lock().map_or(0, |c| c.events_dropped)
    }

    /// Reads whatever xenstored has sent, without waiting, queueing watch events; returns the
    /// number queued. (Watch events are also queued while other operations wait.)
    pub fn poll_watch_events(&self) -> Result<usize, XenError> {
        let Some(mut conn) = self.conn.try_lock() else {
            return Ok(0);
        };
        if let Some(why) = &conn.broken {
            return Err(XenError::Protocol(format!(
                "xenstore: the connection is unusable after: {why}"
            )));
        }
        let before = conn.events.len();
        loop {
            let (m, consumed) = conn.pump_in()?;
            if consumed {
                self.host.evtchn_send(self.port);
            }
            match m {
                Some(m) => {
                    conn.dispatch(m, None)?;
                }
                None if consumed => {}
                None => break,
            }
        }
        Ok(conn.events.len().saturating_sub(before))
    }

    /// Starts a transaction.
    pub fn transaction_start(&self) -> Result<Tx, XenError> {
        let v = self.request(
            "transaction_start",
            "",
            msg::TRANSACTION_START,
            Tx::NONE,
            with_nul(&[b""]),
        )?;
        let s = v.strip_suffix(&[0]).unwrap_or(&v);
        core::str::from_utf8(s)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|&id| id != 0)
            .map(Tx)
            .ok_or_else(|| {
                XenError::Protocol(
                    "xenstore transaction_start: the reply is not a transaction id".into(),
                )
            })
    }

    /// Ends a transaction: commits it (`Err` with [`XsErrno::Eagain`] if it conflicted with
    /// another change: nothing was written, run it again) or aborts it.
    pub fn transaction_end(&self, tx: Tx, commit: bool) -> Result<(), XenError> {
        let p = with_nul(&[if commit { b"T" } else { b"F" }]);
        self.request("transaction_end", "", msg::TRANSACTION_END, tx, p)
            .map(drop)
    }

    /// Runs `body` in a transaction and commits it, running it again (up to `attempts` times in
    /// all) while the commit fails with `EAGAIN`. An error from `body` aborts the transaction
    /// and is returned.
    pub fn transaction<T>(
        &self,
        attempts: u32,
        mut body: impl FnMut(Tx) -> Result<T, XenError>,
    ) -> Result<T, XenError> {
        let mut last = None;
        for _ in 0..attempts.max(1) {
            let tx = self.transaction_start()?;
            let value = match body(tx) {
                Ok(v) => v,
                Err(e) => {
                    let _ = self.transaction_end(tx, false);
                    return Err(e);
                }
            };
            match self.transaction_end(tx, true) {
                Ok(()) => return Ok(value),
                Err(
                    e @ XenError::Store {
                        errno: XsErrno::Eagain,
                        ..
                    },
                ) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| XenError::Invalid("no transaction attempt".into())))
    }

    /// The home path of domain `domid` (`/local/domain/<domid>`).
    pub fn get_domain_path(&self, domid: u16) -> Result<String, XenError> {
        let id = domid.to_string();
        let v = self.request(
            "get_domain_path",
            &id,
            msg::GET_DOMAIN_PATH,
            Tx::NONE,
            with_nul(&[id.as_bytes()]),
        )?;
        let s = v.strip_suffix(&[0]).unwrap_or(&v).to_vec();
        utf8("get_domain_path", &id, s)
    }
}

#[cfg(test)]
mod tests;
