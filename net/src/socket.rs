//! Blocking sockets for apps: TCP listeners and streams, UDP sockets — with every resource a
//! peer can make the stack hold bounded.
//!
//! Every call takes the stack lock, works on its smoltcp socket, and if it cannot progress
//! waits on the stack's condition variable — which the network thread notifies after polls
//! that changed socket state — until it can, the socket fails, or its timeout passes. The
//! caller runs at its own priority throughout; nothing spins. `None` as a timeout waits
//! without limit, `Some(Duration::ZERO)` not at all; TCP connections still end (with
//! [`NetError::Reset`]) when the peer is gone, through smoltcp's keep-alive and
//! retransmission timeouts.
//!
//! **Bounds** (the policy is `policy.rs`, host-tested):
//! - every socket's buffers come out of the stack's byte [`Budget`](crate::policy::Budget)
//!   before they are allocated (and the allocation itself is fallible): a socket that does not
//!   fit is [`NetError::NoMemory`], counted, never a failed allocation;
//! - a listener keeps a backlog of listening sockets, admits at most
//!   [`ListenOptions::max_connections`] live connections and
//!   [`ListenOptions::max_per_peer`] from one address; a connection beyond either is reset
//!   (counted) when `accept` takes it;
//! - the network thread ([`maintain`]) gives up half-open connections that wait too long for
//!   the handshake's last ACK (sooner when no socket of the listener is listening: SYN
//!   pressure), refills backlogs as the budget allows, and forgets closed connections —
//!   including ones in TIME-WAIT and ones whose peer never finishes closing;
//! - a UDP socket is three smoltcp sockets: one receives, two send — one lane for datagrams
//!   whose next hop is a neighbour heard from recently, one for the rest. A lane whose head
//!   datagram has not left within `UDP_STALL_MS` (its next hop does not answer ARP) is flushed,
//!   its datagrams dropped and counted, and that next hop refused for a while: one datagram
//!   from an unreachable source cannot stop the replies to everyone else.

use crate::NetError;
use crate::policy::{self, Admission, PeerLimits, Slot};
use crate::stack::{self, CHANGED, Stack};
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use rhea::sync::MutexGuard;
use rhea::time::{Duration, Instant};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{IpAddress, IpEndpoint, IpListenEndpoint, Ipv4Address};

/// TCP socket buffers (each direction).
pub(crate) const TCP_BUFFER: usize = 32 * 1024;
/// How long a silent peer is tolerated before the connection is reset.
const TCP_TIMEOUT: Duration = Duration::from_secs(30);
/// Keep-alive probes on idle connections.
const TCP_KEEPALIVE: Duration = Duration::from_secs(10);
/// How long a connection its owner dropped may take to finish closing before it is reset.
const ORPHAN_MAX_MS: u64 = 15_000;
/// How long an aborted backlog socket waits for its RST to leave before it listens again
/// anyway (the RST may have no next hop).
const ABORT_GRACE_MS: u64 = 1_000;
/// UDP: the receiving socket's datagrams and bytes.
const UDP_RX_PACKETS: usize = 64;
const UDP_RX_BYTES: usize = 64 * 1024;
/// UDP: the known-neighbour send lane.
const UDP_FAST_PACKETS: usize = 64;
const UDP_FAST_BYTES: usize = 64 * 1024;
/// UDP: the send lane for next hops not heard from.
const UDP_SLOW_PACKETS: usize = 16;
const UDP_SLOW_BYTES: usize = 16 * 1024;

fn smol(d: Duration) -> smoltcp::time::Duration {
    smoltcp::time::Duration::from_micros(d.as_micros() as u64)
}

pub(crate) fn now_ms() -> u64 {
    rhea::time::now().as_nanos() / 1_000_000
}

/// Waits on the stack's condition variable until `deadline` (`None`: no limit). Returns the
/// guard, or [`NetError::Timeout`].
fn wait(
    g: MutexGuard<'static, Option<Stack>>,
    deadline: Option<Instant>,
) -> Result<MutexGuard<'static, Option<Stack>>, NetError> {
    match deadline {
        None => Ok(CHANGED.wait(g)),
        Some(d) => {
            let now = rhea::time::now();
            if now.as_nanos() >= d.as_nanos() {
                return Err(NetError::Timeout);
            }
            let left = Duration::from_nanos(d.as_nanos() - now.as_nanos());
            Ok(CHANGED.wait_timeout(g, left).0)
        }
    }
}

fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| {
        Instant::from_nanos(
            rhea::time::now()
                .as_nanos()
                .saturating_add(t.as_nanos() as u64),
        )
    })
}

fn stack_of<'a>(g: &'a mut MutexGuard<'static, Option<Stack>>) -> &'a mut Stack {
    g.as_mut().expect("stack::lock checked it is started")
}

/// `n` zero bytes, or [`NetError::NoMemory`] when the heap cannot give them.
fn buffer(n: usize) -> Result<Vec<u8>, NetError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| NetError::NoMemory)?;
    v.resize(n, 0);
    Ok(v)
}

fn metadata<T: Clone>(n: usize, empty: T) -> Result<Vec<T>, NetError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| NetError::NoMemory)?;
    v.resize(n, empty);
    Ok(v)
}

/// A new TCP socket in the set with `buffer` bytes each way, taken from the budget.
fn add_tcp(s: &mut Stack, buffer_bytes: usize) -> Result<SocketHandle, NetError> {
    s.take(2 * buffer_bytes)?;
    let bufs = buffer(buffer_bytes).and_then(|rx| Ok((rx, buffer(buffer_bytes)?)));
    let (rx, tx) = match bufs {
        Ok(b) => b,
        Err(e) => {
            s.give(2 * buffer_bytes);
            s.counters.no_memory.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
    };
    let mut sock = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
    sock.set_timeout(Some(smol(TCP_TIMEOUT)));
    sock.set_keep_alive(Some(smol(TCP_KEEPALIVE)));
    sock.set_nagle_enabled(false);
    // ACK at once rather than after smoltcp's default 10 ms delay: a receiver whose reply is
    // produced by another thread (the echo service) otherwise leaves the sender's window
    // waiting for the timer. `bench net`, 3 rounds each, alternating with the default: TCP echo
    // 0.81-0.97x Linux against 0.69-0.89x (medians 0.91 and 0.92 against 0.74 and 0.83), the
    // same frames per MiB (the ACKs ride on the echoed data).
    sock.set_ack_delay(None);
    Ok(s.add(sock))
}

/// A new UDP socket in the set with the given capacities (either direction may be empty),
/// its buffers and metadata taken from the budget.
fn add_udp(
    s: &mut Stack,
    port: u16,
    (rx_packets, rx_bytes): (usize, usize),
    (tx_packets, tx_bytes): (usize, usize),
) -> Result<SocketHandle, NetError> {
    let bytes = rx_bytes + tx_bytes + (rx_packets + tx_packets) * size_of::<udp::PacketMetadata>();
    s.take(bytes)?;
    let made = (|| {
        let rx = udp::PacketBuffer::new(
            metadata(rx_packets, udp::PacketMetadata::EMPTY)?,
            buffer(rx_bytes)?,
        );
        let tx = udp::PacketBuffer::new(
            metadata(tx_packets, udp::PacketMetadata::EMPTY)?,
            buffer(tx_bytes)?,
        );
        Ok(udp::Socket::new(rx, tx))
    })();
    let mut sock = match made {
        Ok(sock) => sock,
        Err(e) => {
            s.give(bytes);
            s.counters.no_memory.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
    };
    if sock.bind(port).is_err() {
        s.give(bytes);
        return Err(NetError::InvalidInput);
    }
    Ok(s.add(sock))
}

/// How a listener bounds its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenOptions {
    /// Listening sockets kept ready (connections being set up at once), at least 1.
    pub backlog: usize,
    /// Live (accepted, not yet dropped) connections at most.
    pub max_connections: usize,
    /// Live connections from one peer address at most.
    pub max_per_peer: usize,
    /// Bytes of each connection's buffers, each way (1 KiB to 256 KiB): what a connection
    /// takes from the socket budget twice over.
    pub buffer: usize,
}

impl ListenOptions {
    /// A backlog of `backlog`, at most 64 connections, 16 per peer, 32 KiB buffers.
    pub const fn new(backlog: usize) -> ListenOptions {
        ListenOptions {
            backlog,
            max_connections: 64,
            max_per_peer: 16,
            buffer: TCP_BUFFER,
        }
    }
}

/// One socket of a listener's backlog.
#[derive(Debug)]
struct Pending {
    handle: SocketHandle,
    /// When it entered SYN-RECEIVED (ms), while it is there.
    half_open_since: Option<u64>,
    /// When it was aborted (its RST to send), until it listens again.
    aborted_at: Option<u64>,
}

/// A listener's state, kept with the stack so the network thread maintains it.
#[derive(Debug)]
pub(crate) struct ListenerState {
    id: u64,
    port: u16,
    backlog_target: usize,
    backlog: Vec<Pending>,
    peers: PeerLimits<SocketHandle>,
    buffer: usize,
}

/// A TCP port accepting connections. [`TcpListener::accept`] takes `&self`: several threads
/// may accept on one listener.
#[derive(Debug)]
pub struct TcpListener {
    id: u64,
}

impl TcpListener {
    /// Listens on `port` with room for `backlog` (at least 1) connections being set up at once
    /// and the default limits of [`ListenOptions::new`].
    pub fn bind(port: u16, backlog: usize) -> Result<TcpListener, NetError> {
        Self::bind_with(port, ListenOptions::new(backlog))
    }

    /// Listens on `port` with the given bounds.
    pub fn bind_with(port: u16, opts: ListenOptions) -> Result<TcpListener, NetError> {
        if port == 0
            || opts.max_connections == 0
            || opts.max_per_peer == 0
            || !(1024..=256 * 1024).contains(&opts.buffer)
        {
            return Err(NetError::InvalidInput);
        }
        let backlog_target = opts.backlog.clamp(1, 64);
        let mut g = stack::lock()?;
        let s = stack_of(&mut g);
        if s.listeners.iter().any(|l| l.port == port) {
            return Err(NetError::InvalidInput);
        }
        let mut backlog: Vec<Pending> = Vec::new();
        backlog
            .try_reserve_exact(backlog_target)
            .map_err(|_| NetError::NoMemory)?;
        s.listeners.try_reserve(1).map_err(|_| NetError::NoMemory)?;
        let id = s.next_id();
        for _ in 0..backlog_target {
            let h = match add_tcp(s, opts.buffer) {
                Ok(h) => h,
                Err(e) => {
                    for p in backlog {
                        s.remove(p.handle);
                    }
                    return Err(e);
                }
            };
            let _ = s
                .sockets
                .get_mut::<tcp::Socket>(h)
                .listen(IpListenEndpoint::from(port));
            backlog.push(Pending {
                handle: h,
                half_open_since: None,
                aborted_at: None,
            });
        }
        s.listeners.push(ListenerState {
            id,
            port,
            backlog_target,
            backlog,
            peers: PeerLimits::new(opts.max_connections, opts.max_per_peer),
            buffer: opts.buffer,
        });
        drop(g);
        stack::kick();
        Ok(TcpListener { id })
    }

    /// Waits for a connection (at most `timeout`). A connection beyond the listener's limits
    /// is reset and counted (`tcp_refused` in [`crate::NetStats`]), and the wait goes on.
    pub fn accept(&self, timeout: Option<Duration>) -> Result<TcpStream, NetError> {
        let deadline = deadline(timeout);
        let mut g = stack::lock()?;
        loop {
            let s = stack_of(&mut g);
            let now = now_ms();
            let Some(li) = s.listeners.iter().position(|l| l.id == self.id) else {
                return Err(NetError::Closed);
            };
            let ready = s.listeners[li].backlog.iter().position(|p| {
                let sock = s.sockets.get::<tcp::Socket>(p.handle);
                p.aborted_at.is_none()
                    && sock.is_active()
                    && !sock.is_listening()
                    && sock.state() != tcp::State::SynReceived
            });
            if let Some(i) = ready {
                let p = s.listeners[li].backlog.swap_remove(i);
                let sock = s.sockets.get_mut::<tcp::Socket>(p.handle);
                let peer = sock.remote_endpoint().map(|e| e.addr);
                let admitted = peer.map(|a| s.listeners[li].peers.admit(p.handle, a, now));
                if let Some(Ok(admission)) = admitted {
                    if let Admission::Evict(victim) = admission {
                        s.sockets.get_mut::<tcp::Socket>(victim).abort();
                        s.counters.tcp_evicted.fetch_add(1, Ordering::Relaxed);
                    }
                    refill(s, li);
                    drop(g);
                    stack::kick();
                    return Ok(TcpStream {
                        handle: Some(p.handle),
                        origin: Some(self.id),
                    });
                }
                // Over a limit (or gone meanwhile): reset it; the socket listens again once
                // its RST is out. (Its handle was never admitted.)
                s.sockets.get_mut::<tcp::Socket>(p.handle).abort();
                s.counters.tcp_refused.fetch_add(1, Ordering::Relaxed);
                s.listeners[li].backlog.push(Pending {
                    aborted_at: Some(now),
                    ..p
                });
                stack::kick();
                continue;
            }
            g = wait(g, deadline)?;
        }
    }
}

/// Adds listening sockets to listener `li` up to its backlog, as far as the budget allows.
fn refill(s: &mut Stack, li: usize) {
    while s.listeners[li].backlog.len() < s.listeners[li].backlog_target {
        let Ok(h) = add_tcp(s, s.listeners[li].buffer) else {
            return;
        };
        let l = &mut s.listeners[li];
        let _ = s
            .sockets
            .get_mut::<tcp::Socket>(h)
            .listen(IpListenEndpoint::from(l.port));
        l.backlog.push(Pending {
            handle: h,
            half_open_since: None,
            aborted_at: None,
        });
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        if let Ok(mut g) = stack::lock() {
            let s = stack_of(&mut g);
            if let Some(li) = s.listeners.iter().position(|l| l.id == self.id) {
                let l = s.listeners.swap_remove(li);
                for p in l.backlog {
                    s.sockets.get_mut::<tcp::Socket>(p.handle).abort();
                    s.orphan(p.handle, now_ms());
                }
            }
        }
        stack::kick();
    }
}

/// A TCP connection.
#[derive(Debug)]
pub struct TcpStream {
    handle: Option<SocketHandle>,
    /// The listener that admitted it (where it counts until dropped).
    origin: Option<u64>,
}

impl TcpStream {
    /// Connects to `remote` from an ephemeral `local_port`, waiting at most `timeout`.
    pub fn connect(
        remote: IpEndpoint,
        local_port: u16,
        timeout: Option<Duration>,
    ) -> Result<TcpStream, NetError> {
        let deadline = deadline(timeout);
        let mut g = stack::lock()?;
        let s = stack_of(&mut g);
        let h = add_tcp(s, TCP_BUFFER)?;
        let stream = TcpStream {
            handle: Some(h),
            origin: None,
        };
        let s = stack_of(&mut g);
        if s.sockets
            .get_mut::<tcp::Socket>(h)
            .connect(s.iface.context(), remote, local_port)
            .is_err()
        {
            drop(g);
            return Err(NetError::InvalidInput);
        }
        stack::kick();
        loop {
            let s = stack_of(&mut g);
            match s.sockets.get::<tcp::Socket>(h).state() {
                tcp::State::Established => return Ok(stream),
                tcp::State::Closed => return Err(NetError::Refused),
                _ => {}
            }
            g = wait(g, deadline)?;
        }
    }

    fn handle(&self) -> SocketHandle {
        self.handle.expect("present until drop")
    }

    /// Reads what has arrived into `buf` (waiting at most `timeout` for something); `Ok(0)`
    /// when the peer closed its side.
    pub fn read(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<usize, NetError> {
        let deadline = deadline(timeout);
        let h = self.handle();
        let mut g = stack::lock()?;
        loop {
            let s = stack_of(&mut g);
            let sock = s.sockets.get_mut::<tcp::Socket>(h);
            if sock.can_recv() {
                let n = sock.recv_slice(buf).map_err(|_| NetError::Closed)?;
                drop(g);
                stack::kick(); // the window opened
                return Ok(n);
            }
            if !sock.may_recv() {
                return match sock.state() {
                    tcp::State::Closed if sock.remote_endpoint().is_none() => Err(NetError::Reset),
                    _ => Ok(0),
                };
            }
            g = wait(g, deadline)?;
        }
    }

    /// Queues as much of `buf` as fits (waiting at most `timeout` for room); returns how much.
    pub fn write(&mut self, buf: &[u8], timeout: Option<Duration>) -> Result<usize, NetError> {
        let deadline = deadline(timeout);
        let h = self.handle();
        let mut g = stack::lock()?;
        loop {
            let s = stack_of(&mut g);
            let sock = s.sockets.get_mut::<tcp::Socket>(h);
            if !sock.may_send() {
                return Err(if sock.state() == tcp::State::Closed {
                    NetError::Reset
                } else {
                    NetError::Closed
                });
            }
            if sock.can_send() {
                let n = sock.send_slice(buf).map_err(|_| NetError::Closed)?;
                drop(g);
                stack::kick();
                return Ok(n);
            }
            g = wait(g, deadline)?;
        }
    }

    /// Writes all of `buf`, each wait for room limited by `timeout`.
    pub fn write_all(&mut self, mut buf: &[u8], timeout: Option<Duration>) -> Result<(), NetError> {
        while !buf.is_empty() {
            let n = self.write(buf, timeout)?;
            buf = &buf[n..];
        }
        Ok(())
    }

    /// The peer's address.
    pub fn peer(&self) -> Option<IpEndpoint> {
        let mut g = stack::lock().ok()?;
        stack_of(&mut g)
            .sockets
            .get::<tcp::Socket>(self.handle())
            .remote_endpoint()
    }

    /// Closes our side (the peer reads end-of-stream once queued data is sent).
    pub fn close(&mut self) {
        if let Ok(mut g) = stack::lock() {
            stack_of(&mut g)
                .sockets
                .get_mut::<tcp::Socket>(self.handle())
                .close();
        }
        stack::kick();
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let Some(h) = self.handle.take() else { return };
        if let Ok(mut g) = stack::lock() {
            let s = stack_of(&mut g);
            s.sockets.get_mut::<tcp::Socket>(h).close();
            s.orphan(h, now_ms());
            if let Some(id) = self.origin
                && let Some(l) = s.listeners.iter_mut().find(|l| l.id == id)
            {
                l.peers.release(h);
            }
        }
        stack::kick();
    }
}

/// One send lane of a UDP socket.
#[derive(Debug)]
struct Lane {
    handle: SocketHandle,
    /// The next hop of each datagram queued in the smoltcp socket, oldest first (`None`:
    /// needs none). Never longer than the socket's datagram capacity (reserved at bind).
    queued: VecDeque<Option<Ipv4Address>>,
    /// When the lane last made progress (ms).
    progress_at: u64,
}

const FAST: usize = 0;
const SLOW: usize = 1;

/// A UDP socket's state, kept with the stack so the network thread maintains it.
#[derive(Debug)]
pub(crate) struct UdpState {
    id: u64,
    port: u16,
    rx: SocketHandle,
    lanes: [Lane; 2],
}

/// A UDP socket bound to a port.
#[derive(Debug)]
pub struct UdpSocket {
    id: u64,
    rx: SocketHandle,
}

impl UdpSocket {
    /// Binds `port`.
    pub fn bind(port: u16) -> Result<UdpSocket, NetError> {
        if port == 0 {
            return Err(NetError::InvalidInput);
        }
        let mut g = stack::lock()?;
        let s = stack_of(&mut g);
        if s.udp.iter().any(|u| u.port == port) {
            return Err(NetError::InvalidInput);
        }
        s.udp.try_reserve(1).map_err(|_| NetError::NoMemory)?;
        let mut fast_q = VecDeque::new();
        let mut slow_q = VecDeque::new();
        fast_q
            .try_reserve_exact(UDP_FAST_PACKETS)
            .and_then(|()| slow_q.try_reserve_exact(UDP_SLOW_PACKETS))
            .map_err(|_| NetError::NoMemory)?;
        // The receiving socket first: smoltcp hands a datagram to the first socket in the set
        // bound to its port, and a socket takes the lowest free slot, so the two send lanes
        // (added next, in higher slots, with no receive room) never see one.
        let rx = add_udp(s, port, (UDP_RX_PACKETS, UDP_RX_BYTES), (0, 0))?;
        let fast = match add_udp(s, port, (0, 0), (UDP_FAST_PACKETS, UDP_FAST_BYTES)) {
            Ok(h) => h,
            Err(e) => {
                s.remove(rx);
                return Err(e);
            }
        };
        let slow = match add_udp(s, port, (0, 0), (UDP_SLOW_PACKETS, UDP_SLOW_BYTES)) {
            Ok(h) => h,
            Err(e) => {
                s.remove(rx);
                s.remove(fast);
                return Err(e);
            }
        };
        debug_assert!(rx < fast && fast < slow, "slot order decides delivery");
        let id = s.next_id();
        let now = now_ms();
        s.udp.push(UdpState {
            id,
            port,
            rx,
            lanes: [
                Lane {
                    handle: fast,
                    queued: fast_q,
                    progress_at: now,
                },
                Lane {
                    handle: slow,
                    queued: slow_q,
                    progress_at: now,
                },
            ],
        });
        Ok(UdpSocket { id, rx })
    }

    /// Waits at most `timeout` for a datagram; copies it into `buf` (truncated to its length)
    /// and returns its length and sender.
    pub fn recv_from(
        &self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<(usize, IpEndpoint), NetError> {
        let deadline = deadline(timeout);
        let mut g = stack::lock()?;
        loop {
            let s = stack_of(&mut g);
            let sock = s.sockets.get_mut::<udp::Socket>(self.rx);
            match sock.recv_slice(buf) {
                Ok((n, meta)) => return Ok((n, meta.endpoint)),
                Err(udp::RecvError::Truncated) => return Err(NetError::Truncated),
                Err(udp::RecvError::Exhausted) => {}
            }
            g = wait(g, deadline)?;
        }
    }

    /// Queues one datagram to `to`, waiting at most `timeout` for buffer room. A destination
    /// with no route, or whose next hop was given up recently, is
    /// [`NetError::Unreachable`] at once (and counted).
    pub fn send_to(
        &self,
        data: &[u8],
        to: IpEndpoint,
        timeout: Option<Duration>,
    ) -> Result<(), NetError> {
        let deadline = deadline(timeout);
        let mut g = stack::lock()?;
        let s = stack_of(&mut g);
        let now = now_ms();
        let IpAddress::Ipv4(dst) = to.addr;
        let hop = s
            .address
            .and_then(|ours| policy::next_hop(dst, ours, s.gateway));
        let Some(hop) = hop else {
            s.counters.udp_unreachable.fetch_add(1, Ordering::Relaxed);
            return Err(NetError::Unreachable);
        };
        if let Some(h) = hop
            && s.unreachable.known(h, now)
        {
            s.counters.udp_unreachable.fetch_add(1, Ordering::Relaxed);
            return Err(NetError::Unreachable);
        }
        let lane = match hop {
            Some(h) if !s.neighbours.known(h, now) => SLOW,
            _ => FAST,
        };
        let ui = s
            .udp
            .iter()
            .position(|u| u.id == self.id)
            .ok_or(NetError::Closed)?;
        loop {
            let s = stack_of(&mut g);
            let l = &mut s.udp[ui].lanes[lane];
            let sock = s.sockets.get_mut::<udp::Socket>(l.handle);
            // The record of queued datagrams has room whenever the socket has.
            if l.queued.len() < l.queued.capacity() {
                match sock.send_slice(data, to) {
                    Ok(()) => {
                        if l.queued.is_empty() {
                            l.progress_at = now_ms();
                        }
                        l.queued.push_back(hop);
                        drop(g);
                        stack::kick();
                        return Ok(());
                    }
                    Err(udp::SendError::BufferFull) => {}
                    Err(udp::SendError::Unaddressable) => return Err(NetError::Unreachable),
                }
            }
            g = wait(g, deadline)?;
        }
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        if let Ok(mut g) = stack::lock() {
            let s = stack_of(&mut g);
            if let Some(ui) = s.udp.iter().position(|u| u.id == self.id) {
                let u = s.udp.swap_remove(ui);
                s.remove(u.rx);
                for l in u.lanes {
                    s.remove(l.handle);
                }
            }
        }
    }
}

/// The network thread's upkeep after each poll: backlogs (half-open connections given up,
/// aborted sockets listening again, refills), orphaned connections (removed once closed or in
/// TIME-WAIT; reset when they take too long), and UDP send lanes (a stalled one is flushed).
pub(crate) fn maintain(s: &mut Stack, now: u64) {
    for li in 0..s.listeners.len() {
        let port = s.listeners[li].port;
        let mut slots: [Slot; 64] = [Slot::Busy; 64];
        for (i, p) in s.listeners[li].backlog.iter_mut().enumerate() {
            let sock = s.sockets.get_mut::<tcp::Socket>(p.handle);
            if let Some(at) = p.aborted_at {
                if sock.remote_endpoint().is_none() || now.saturating_sub(at) >= ABORT_GRACE_MS {
                    sock.abort();
                    let _ = sock.listen(IpListenEndpoint::from(port));
                    p.aborted_at = None;
                }
            } else if sock.state() == tcp::State::Closed {
                // Reset by the peer during the handshake.
                let _ = sock.listen(IpListenEndpoint::from(port));
            }
            p.half_open_since = match (sock.state(), p.half_open_since) {
                (tcp::State::SynReceived, None) => Some(now),
                (tcp::State::SynReceived, since) => since,
                _ => None,
            };
            slots[i] = match (sock.state(), p.half_open_since) {
                (tcp::State::Listen, _) => Slot::Listening,
                (_, Some(since)) => Slot::HalfOpen(since),
                _ => Slot::Busy,
            };
        }
        let n = s.listeners[li].backlog.len();
        if let Some(i) = policy::recycle(now, &slots[..n]) {
            let p = &mut s.listeners[li].backlog[i];
            let sock = s.sockets.get_mut::<tcp::Socket>(p.handle);
            // No RST: the peer never answered, and the listening state forgets the tuple.
            sock.abort();
            let _ = sock.listen(IpListenEndpoint::from(port));
            p.half_open_since = None;
            s.counters.syn_recycled.fetch_add(1, Ordering::Relaxed);
        }
        refill(s, li);
    }

    let mut i = 0;
    while i < s.orphans.len() {
        let (h, since) = s.orphans[i];
        let sock = s.sockets.get_mut::<tcp::Socket>(h);
        let state = sock.state();
        let gone = match state {
            tcp::State::Closed => sock.remote_endpoint().is_none() || now - since >= ABORT_GRACE_MS,
            // Our FIN was acknowledged and theirs answered: nothing more can happen that
            // matters to us (a retransmitted FIN gets a reset).
            tcp::State::TimeWait => true,
            _ => false,
        };
        if gone {
            s.orphans.swap_remove(i);
            s.remove(h);
            continue;
        }
        if now.saturating_sub(since) >= ORPHAN_MAX_MS {
            sock.abort();
            s.orphans[i].1 = now; // removed once the RST is out (or a grace later)
            s.counters.orphans_reset.fetch_add(1, Ordering::Relaxed);
        }
        i += 1;
    }

    for ui in 0..s.udp.len() {
        let port = s.udp[ui].port;
        for lane in 0..2 {
            let l = &mut s.udp[ui].lanes[lane];
            let sock = s.sockets.get_mut::<udp::Socket>(l.handle);
            let waiting = sock.send_queue();
            let sent = l.queued.len().saturating_sub(waiting);
            l.queued.drain(..sent);
            if sent > 0 || waiting == 0 {
                l.progress_at = now;
            } else if now.saturating_sub(l.progress_at) >= policy::UDP_STALL_MS {
                // The head's next hop does not resolve: give up everything queued here and
                // refuse that next hop for a while.
                if let Some(Some(hop)) = l.queued.front() {
                    s.unreachable.heard(*hop, [0; 6], now);
                }
                sock.close();
                let _ = sock.bind(port);
                s.counters
                    .udp_dropped
                    .fetch_add(waiting as u64, Ordering::Relaxed);
                l.queued.clear();
                l.progress_at = now;
            }
        }
    }
    s.publish();
}
