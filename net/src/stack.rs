//! The network thread, the NIC driver thread, and what they share.
//!
//! ```text
//!  NIC ──irq──▶ driver thread ──rx ring (SPSC)──▶ network thread (smoltcp) ◀──▶ app sockets
//!      ◀─────── (driver prio) ◀──tx ring (SPSC)── (net prio)          (STACK mutex, CHANGED)
//!                    ▲   └──────── frame pool (MPMC) ────────┘
//! ```
//!
//! **Frames** live in a fixed pool of [`FRAME_BYTES`] buffers allocated at start: receiving
//! takes one from the pool, smoltcp's consumption returns it; transmitting takes one for
//! smoltcp to fill, the driver returns it once the device has copied it. Nothing allocates per
//! packet. Full means drop-and-count: a full rx ring drops the frame (`rx_ring_full`), a full tx
//! ring drops smoltcp's frame (`tx_ring_full`, TCP retransmits), an empty pool leaves frames in
//! the device (`pool_empty`) until buffers return, when the network thread wakes the driver.
//!
//! **Locks**: `STACK` (a priority-inheriting `rhea::sync::Mutex`) guards smoltcp's interface and
//! sockets; the network thread holds it while it polls, apps while they touch a socket — an
//! important app thread waiting for it lends the network thread its priority. It is never taken
//! in interrupt context and nothing else is taken under it except the scheduler lock (through
//! `CHANGED` and the events). `CHANGED` (a condition variable on `STACK`) is notified after
//! every poll that changed socket state; socket calls wait on it with their timeout.

use crate::neighbours;
use crate::policy::{self, Budget, Neighbours};
use crate::socket::{self, ListenerState, UdpState};
use crate::validate::{self, MalformedCounts};
use crate::{Config, IpConfig, NetError};
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use rhea::irq::DeviceEvent;
use rhea::sync::{Condvar, Mutex, MutexGuard, NothingOff, SpinLock};
use rhea::time::Duration;
use rhea::trace::DropWhy;
use rhea_drivers::net::{MAX_FRAME, NetDevice, NetDeviceStats, NetError as DevError};
use rhea_queue::mpmc;
use rhea_queue::spsc::{self, Consumer, Producer};
use smoltcp::iface::{Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::{self, Checksum, DeviceCapabilities, Medium};
use smoltcp::socket::dhcpv4;
use smoltcp::socket::udp;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

/// Bytes of one frame buffer (a full Ethernet frame, rounded up).
pub(crate) const FRAME_BYTES: usize = 1536;

/// One frame buffer.
pub(crate) struct Frame {
    len: usize,
    data: [u8; FRAME_BYTES],
}

/// What the driver thread, the network thread and the sockets share.
pub(crate) struct Shared {
    pool: mpmc::Queue<Box<Frame>>,
    /// Frame buffers made at start (the pool's size), and the most out at once (for
    /// `rhea::pools`, relaxed).
    frames: usize,
    frames_peak: core::sync::atomic::AtomicUsize,
    /// Wakes the network thread (frames arrived, an app queued work).
    pub(crate) net_event: DeviceEvent,
    /// Wakes the driver thread (its interrupt, frames to send, buffers returned).
    driver_event: DeviceEvent,
    /// Set by the driver when the pool ran dry; the network thread wakes it when buffers return.
    starved: AtomicBool,
    /// The device's driver fills in TCP checksums of what is sent.
    tcp_checksum_offload: bool,
    /// Set by the driver when the rx ring was full and it stopped reading the device
    /// (backpressure); the network thread wakes it once it has drained the ring.
    rx_blocked: AtomicBool,
    pub(crate) counters: Counters,
    /// Lock: thread context only (the driver thread writes, `stats()` reads), nothing
    /// disabled; a leaf, held for a copy.
    device: SpinLock<NetDeviceStats, NothingOff>,
    /// Lock: as `device` (the network thread counts, `stats()` reads).
    malformed: SpinLock<MalformedCounts, NothingOff>,
}

/// Counters of the data path.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    rx_frames: AtomicU64,
    tx_frames: AtomicU64,
    rx_ring_full: AtomicU64,
    tx_ring_full: AtomicU64,
    pool_empty: AtomicU64,
    device_errors: AtomicU64,
    polls: AtomicU64,
    rx_backpressure: AtomicU64,
    pub(crate) no_memory: AtomicU64,
    pub(crate) tcp_refused: AtomicU64,
    pub(crate) tcp_evicted: AtomicU64,
    pub(crate) syn_recycled: AtomicU64,
    pub(crate) orphans_reset: AtomicU64,
    pub(crate) udp_dropped: AtomicU64,
    pub(crate) udp_unreachable: AtomicU64,
    socket_bytes: AtomicU64,
    socket_budget: AtomicU64,
    sockets: AtomicU64,
    tcp_sockets: AtomicU64,
}

/// The data path's counters, for status pages and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames the driver passed to the network thread.
    pub rx_frames: u64,
    /// Frames the network thread handed to the driver.
    pub tx_frames: u64,
    /// Received frames dropped because the rx ring was full.
    pub rx_ring_full: u64,
    /// Frames smoltcp sent that were dropped because the tx ring was full.
    pub tx_ring_full: u64,
    /// Times a thread found the frame pool empty.
    pub pool_empty: u64,
    /// Times the driver stopped reading its device because the rx ring was full.
    pub rx_backpressure: u64,
    /// Device errors (receive or transmit) other than a full queue.
    pub device_errors: u64,
    /// Malformed frames, by kind (dropped before smoltcp).
    pub malformed: MalformedCounts,
    /// The device's own counters.
    pub device: NetDeviceStats,
    /// Network thread polls.
    pub polls: u64,
    /// Sockets refused because the socket budget (or the heap) had no room.
    pub no_memory: u64,
    /// Connections reset because their listener (or their peer) had its maximum.
    pub tcp_refused: u64,
    /// Connections reset to make room for a newcomer (their peer held the most).
    pub tcp_evicted: u64,
    /// Half-open connections given up (the handshake's last ACK never came).
    pub syn_recycled: u64,
    /// Dropped connections reset because they did not finish closing in time.
    pub orphans_reset: u64,
    /// UDP datagrams dropped from a send lane whose next hop did not resolve.
    pub udp_dropped: u64,
    /// UDP sends refused at once: no route, or a next hop given up recently.
    pub udp_unreachable: u64,
    /// Bytes of socket buffers held, and the budget they come from.
    pub socket_bytes: u64,
    /// The socket budget (`rhea.net.socket_kib`, or half the heap free at start).
    pub socket_budget: u64,
    /// smoltcp sockets (TCP, UDP send lanes and receivers, DHCP).
    pub sockets: u64,
    /// TCP sockets (listening, connected, closing).
    pub tcp_sockets: u64,
}

/// The frame pool in `rhea::pools::pools()` (`rhea-shell`'s `mem`).
impl rhea::pools::PoolUsage for Shared {
    fn usage(&self) -> rhea::pools::PoolInfo {
        rhea::pools::PoolInfo {
            name: "net frames",
            blocks: self.frames,
            block_bytes: FRAME_BYTES,
            in_use: self.frames.saturating_sub(self.pool.len()),
            peak: self.frames_peak.load(Ordering::Relaxed),
        }
    }
}

impl Shared {
    fn stats(&self) -> NetStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NetStats {
            rx_frames: get(&c.rx_frames),
            tx_frames: get(&c.tx_frames),
            rx_ring_full: get(&c.rx_ring_full),
            tx_ring_full: get(&c.tx_ring_full),
            pool_empty: get(&c.pool_empty),
            rx_backpressure: get(&c.rx_backpressure),
            device_errors: get(&c.device_errors),
            malformed: *self.malformed.lock(),
            device: *self.device.lock(),
            polls: get(&c.polls),
            no_memory: get(&c.no_memory),
            tcp_refused: get(&c.tcp_refused),
            tcp_evicted: get(&c.tcp_evicted),
            syn_recycled: get(&c.syn_recycled),
            orphans_reset: get(&c.orphans_reset),
            udp_dropped: get(&c.udp_dropped),
            udp_unreachable: get(&c.udp_unreachable),
            socket_bytes: get(&c.socket_bytes),
            socket_budget: get(&c.socket_budget),
            sockets: get(&c.sockets),
            tcp_sockets: get(&c.tcp_sockets),
        }
    }

    /// A frame buffer from the pool (the peak of buffers out is kept for reports).
    fn take_frame(&self) -> Option<Box<Frame>> {
        let f = self.pool.pop()?;
        let out = self.frames.saturating_sub(self.pool.len());
        // On the packet path: a read first, the read-modify-write only when the peak moves.
        if out > self.frames_peak.load(Ordering::Relaxed) {
            self.frames_peak.fetch_max(out, Ordering::Relaxed);
        }
        Some(f)
    }

    fn give_back(&self, frame: Box<Frame>) {
        // The pool holds every buffer ever made, so it cannot be full.
        let _ = self.pool.push(frame);
        if self.starved.swap(false, Ordering::AcqRel) {
            self.driver_event.signal();
        }
    }
}

/// smoltcp and its sockets.
pub(crate) struct Stack {
    pub(crate) iface: Interface,
    pub(crate) sockets: SocketSet<'static>,
    rx: Consumer<Box<Frame>>,
    tx: Producer<Box<Frame>>,
    dhcp: Option<SocketHandle>,
    /// TCP sockets whose owner dropped them, and since when (ms): removed once closed.
    /// Reserved for [`MAX_SOCKETS`]: pushing never allocates.
    pub(crate) orphans: Vec<(SocketHandle, u64)>,
    /// The configured address, once known.
    pub(crate) address: Option<Ipv4Cidr>,
    /// The default gateway, if any.
    pub(crate) gateway: Option<Ipv4Address>,
    /// Bytes of socket buffers the sockets may hold.
    budget: Budget,
    /// Sockets in `sockets`, and how many of them are TCP.
    count: usize,
    tcp: usize,
    next_id: u64,
    pub(crate) listeners: Vec<ListenerState>,
    pub(crate) udp: Vec<UdpState>,
    /// Neighbours heard from (ARP aimed at us): UDP replies to them take the fast lane.
    pub(crate) neighbours: Neighbours,
    /// Next hops given up recently (a UDP lane stalled on them).
    pub(crate) unreachable: Neighbours,
    /// Bumped whenever `CHANGED` is notified (see [`crate::wait_for_change`]).
    generation: u64,
    pub(crate) counters: &'static Counters,
}

/// smoltcp sockets at most (the socket set is allocated for them at start; sockets beyond
/// are refused like sockets beyond the budget).
pub(crate) const MAX_SOCKETS: usize = 512;
/// Neighbours remembered for the UDP lanes (smoltcp's own cache is sized by the
/// `iface-neighbor-cache-count-*` feature in the workspace's Cargo.toml; the same number).
const NEIGHBOURS: usize = 256;

impl Stack {
    /// Takes `bytes` of the budget and a socket slot for a socket about to be made.
    pub(crate) fn take(&mut self, bytes: usize) -> Result<(), NetError> {
        if self.count >= MAX_SOCKETS || !self.budget.try_take(bytes) {
            self.counters.no_memory.fetch_add(1, Ordering::Relaxed);
            return Err(NetError::NoMemory);
        }
        self.count += 1;
        Ok(())
    }

    /// Gives back what [`Stack::take`] took for a socket that was not made after all.
    pub(crate) fn give(&mut self, bytes: usize) {
        self.budget.give(bytes);
        self.count -= 1;
    }

    /// Adds a socket whose bytes [`Stack::take`] took.
    pub(crate) fn add<T: smoltcp::socket::AnySocket<'static>>(&mut self, sock: T) -> SocketHandle {
        let sock = sock.upcast();
        if matches!(sock, smoltcp::socket::Socket::Tcp(_)) {
            self.tcp += 1;
        }
        // Within the capacity reserved at start (`take` counted it): no allocation.
        self.sockets.add(sock)
    }

    /// Removes a socket and gives its buffers back to the budget.
    pub(crate) fn remove(&mut self, h: SocketHandle) {
        let bytes = match self.sockets.remove(h) {
            smoltcp::socket::Socket::Tcp(t) => {
                self.tcp -= 1;
                t.recv_capacity() + t.send_capacity()
            }
            smoltcp::socket::Socket::Udp(u) => {
                u.payload_recv_capacity()
                    + u.payload_send_capacity()
                    + (u.packet_recv_capacity() + u.packet_send_capacity())
                        * size_of::<udp::PacketMetadata>()
            }
            _ => 0,
        };
        self.give(bytes);
    }

    /// Hands a TCP socket to the network thread to remove once it has closed.
    pub(crate) fn orphan(&mut self, h: SocketHandle, now_ms: u64) {
        debug_assert!(self.orphans.len() < self.orphans.capacity());
        self.orphans.push((h, now_ms));
    }

    /// A fresh id for a listener or UDP socket.
    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Publishes the gauges for [`stats`].
    pub(crate) fn publish(&self) {
        let c = self.counters;
        c.socket_bytes
            .store(self.budget.used() as u64, Ordering::Relaxed);
        c.socket_budget
            .store(self.budget.limit() as u64, Ordering::Relaxed);
        c.sockets.store(self.count as u64, Ordering::Relaxed);
        c.tcp_sockets.store(self.tcp as u64, Ordering::Relaxed);
    }
}

/// The stack: smoltcp's interface and sockets. Lock: a sleeping mutex (priority inheritance),
/// thread context only — the network thread polls under it, socket calls take it briefly. Taken
/// before any spin lock (the frame pool, the counters, the heap); never held while waiting on
/// `CHANGED` (the condvar releases it).
pub(crate) static STACK: Mutex<Option<Stack>> = Mutex::new(None);
pub(crate) static CHANGED: Condvar = Condvar::new();
static SHARED: rhea_sync::Once<Arc<Shared>> = rhea_sync::Once::new();

/// Locks the stack (the network must be started).
pub(crate) fn lock() -> Result<MutexGuard<'static, Option<Stack>>, NetError> {
    let g = STACK.lock().map_err(|_| NetError::NotStarted)?;
    if g.is_none() {
        return Err(NetError::NotStarted);
    }
    Ok(g)
}

/// One socket, as [`sockets`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketInfo {
    /// `tcp` or `udp`.
    pub kind: &'static str,
    /// Its local endpoint (port; address when bound to one).
    pub local: Option<smoltcp::wire::IpListenEndpoint>,
    /// Its peer (TCP, once connected).
    pub remote: Option<smoltcp::wire::IpEndpoint>,
    /// The TCP state (`Listen`, `Established`, `TimeWait`...); `Bound` for UDP.
    pub state: alloc::string::String,
    /// Bytes waiting to be read.
    pub recv_queue: usize,
    /// Bytes waiting to be sent.
    pub send_queue: usize,
}

/// Every socket the stack holds, with its state (for operators: the shell's `net`). Takes the
/// stack's lock briefly; `NotStarted` before the network is.
pub fn sockets() -> Result<Vec<SocketInfo>, NetError> {
    use smoltcp::socket::Socket;
    let g = lock()?;
    let stack = g.as_ref().ok_or(NetError::NotStarted)?;
    let mut out = Vec::new();
    for (_, socket) in stack.sockets.iter() {
        match socket {
            Socket::Tcp(t) => out.push(SocketInfo {
                kind: "tcp",
                local: t.local_endpoint().map(Into::into).or_else(|| {
                    (t.state() == smoltcp::socket::tcp::State::Listen).then(|| t.listen_endpoint())
                }),
                remote: t.remote_endpoint(),
                state: alloc::format!("{}", t.state()),
                recv_queue: t.recv_queue(),
                send_queue: t.send_queue(),
            }),
            Socket::Udp(u) => out.push(SocketInfo {
                kind: "udp",
                local: Some(u.endpoint()),
                remote: None,
                state: alloc::string::String::from("Bound"),
                recv_queue: u.recv_queue(),
                send_queue: u.send_queue(),
            }),
            #[allow(
                unreachable_patterns,
                reason = "other socket kinds when smoltcp has them on"
            )]
            _ => {}
        }
    }
    Ok(out)
}

/// Asks the network thread to poll soon (an app queued data or closed a socket).
pub(crate) fn kick() {
    if let Some(s) = SHARED.get() {
        s.net_event.signal();
    }
}

/// The data path's counters.
pub fn stats() -> NetStats {
    SHARED.get().map(|s| s.stats()).unwrap_or_default()
}

/// How many times the network thread has reported socket progress so far: with
/// [`wait_for_change`], one thread can serve many sockets (poll them with zero timeouts, then
/// wait for the next change) without missing one that happened in between.
pub fn changes() -> Result<u64, NetError> {
    let g = lock()?;
    Ok(g.as_ref().map_or(0, |s| s.generation))
}

/// Waits until the network thread reports socket progress after `since` (a value of
/// [`changes`]) or `timeout` passes; returns the count then.
pub fn wait_for_change(since: u64, timeout: Duration) -> Result<u64, NetError> {
    let start = rhea::time::now().as_nanos();
    let mut g = lock()?;
    loop {
        let now_gen = g.as_ref().map_or(0, |s| s.generation);
        if now_gen != since {
            return Ok(now_gen);
        }
        let elapsed = rhea::time::now().as_nanos().saturating_sub(start);
        let Some(left) = (timeout.as_nanos() as u64).checked_sub(elapsed) else {
            return Ok(now_gen);
        };
        if left == 0 {
            return Ok(now_gen);
        }
        g = CHANGED.wait_timeout(g, Duration::from_nanos(left)).0;
    }
}

/// How much heap the frame pool of `buffers` takes.
pub(crate) fn pool_bytes(buffers: usize) -> usize {
    buffers.saturating_mul(size_of::<Frame>())
}

fn now() -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros((rhea::time::now().as_nanos() / 1000) as i64)
}

/// Takes the first NIC and starts the driver and network threads.
pub(crate) fn start(config: &Config) -> Result<(), NetError> {
    if SHARED.get().is_some() {
        return Err(NetError::AlreadyStarted);
    }
    let (mut dev, driver_event) = rhea::devices::take_net().map_err(|_| NetError::NoDevice)?;
    // `rhea.net.irq_cpu=N`: the NIC's interrupt goes to CPU N (where the controller can move
    // lines), e.g. away from a CPU that runs a control loop.
    if let Some(cpu) = rhea::cmdline_value("rhea.net.irq_cpu").and_then(|v| v.parse().ok()) {
        match driver_event.set_affinity(cpu) {
            Ok(()) => rhea::println!("rhea-net: {}: interrupts on cpu{cpu}", dev.name()),
            Err(e) => rhea::println!("rhea-net: {}: interrupts stay put: {e}", dev.name()),
        }
    }
    // What the configuration asks of the heap, checked before any of it is taken.
    let heap_free = rhea::memory_stats().heap_free_bytes;
    let pool = pool_bytes(config.buffers);
    if pool > heap_free / 2 {
        rhea::println!(
            "rhea-net: rhea.net.buffers={}: the frame pool would take {} KiB of the {} KiB of heap free; at most {} buffers fit here",
            config.buffers,
            pool / 1024,
            heap_free / 1024,
            heap_free / 2 / size_of::<Frame>()
        );
        return Err(NetError::NoMemory);
    }
    let room = heap_free - pool;
    let budget = match config.socket_kib {
        None => room / 2,
        Some(kib) if kib.saturating_mul(1024) <= room * 3 / 4 => kib * 1024,
        Some(kib) => {
            rhea::println!(
                "rhea-net: rhea.net.socket_kib={kib}: at most {} KiB fit here (three quarters of the {} KiB of heap free after the frame pool)",
                room * 3 / 4 / 1024,
                room / 1024
            );
            return Err(NetError::NoMemory);
        }
    };
    let net_event = DeviceEvent::polled().map_err(|_| NetError::NoDevice)?;
    let pool = mpmc::Queue::new(config.buffers.next_power_of_two());
    for _ in 0..config.buffers {
        let _ = pool.push(Box::new(Frame {
            len: 0,
            data: [0; FRAME_BYTES],
        }));
    }
    let shared = Arc::new(Shared {
        pool,
        frames: config.buffers,
        frames_peak: core::sync::atomic::AtomicUsize::new(0),
        net_event,
        driver_event,
        starved: AtomicBool::new(false),
        tcp_checksum_offload: dev.offloads_tcp_checksum(),
        rx_blocked: AtomicBool::new(false),
        counters: Counters::default(),
        device: SpinLock::new(dev.stats()),
        malformed: SpinLock::new(MalformedCounts::default()),
    });
    let (rx_prod, rx_cons) = spsc::ring(config.ring);
    let (tx_prod, tx_cons) = spsc::ring(config.ring);
    SHARED.call_once(|| shared.clone());
    let usage: Arc<dyn rhea::pools::PoolUsage> = shared.clone();
    rhea::pools::register(&usage);
    let counters: &'static Counters = &SHARED.get().expect("set just now").counters;

    let mac = dev.mac();
    let mut adapter = Adapter {
        shared: &shared,
        rx: None,
        tx: None,
        sent: false,
        received: false,
        neighbours: None,
        ours: None,
        mac,
        now_ms: 0,
        stashed: None,
    };
    let mut iface = Interface::new(
        smoltcp::iface::Config::new(HardwareAddress::Ethernet(EthernetAddress(mac))),
        &mut adapter,
        now(),
    );
    let mut sockets = SocketSet::new(Vec::with_capacity(MAX_SOCKETS));
    let mut address = None;
    let mut gateway_addr = None;
    let dhcp = match config.ip {
        IpConfig::Static {
            address: cidr,
            gateway,
        } => {
            iface.update_ip_addrs(|a| {
                let _ = a.push(IpCidr::Ipv4(cidr));
            });
            if let Some(gw) = gateway {
                let _ = iface.routes_mut().add_default_ipv4_route(gw);
                gateway_addr = Some(gw);
            }
            address = Some(cidr);
            None
        }
        IpConfig::Dhcp => Some(sockets.add(dhcpv4::Socket::new())),
    };
    rhea::println!(
        "rhea-net: {} mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, {}",
        dev.name(),
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5],
        match (config.ip, address) {
            (_, Some(a)) => alloc::format!("ip {a}"),
            _ => alloc::string::String::from("ip from DHCP"),
        }
    );
    if !dev.link_up() {
        rhea::println!(
            "rhea-net: {}: link down; frames to send are dropped (and counted) until it comes up",
            dev.name()
        );
    }
    rhea::println!(
        "rhea-net: socket budget {} KiB ({} KiB of heap free, frame pool {} KiB)",
        budget / 1024,
        heap_free / 1024,
        pool_bytes(config.buffers) / 1024
    );
    let stack = Stack {
        iface,
        sockets,
        rx: rx_cons,
        tx: tx_prod,
        dhcp,
        orphans: Vec::with_capacity(MAX_SOCKETS),
        address,
        gateway: gateway_addr,
        budget: Budget::new(budget),
        count: usize::from(dhcp.is_some()),
        tcp: 0,
        next_id: 0,
        listeners: Vec::new(),
        udp: Vec::new(),
        neighbours: Neighbours::new(NEIGHBOURS, policy::NEIGHBOUR_LIFETIME_MS),
        unreachable: Neighbours::new(64, policy::UNREACHABLE_MS),
        generation: 0,
        counters,
    };
    stack.publish();
    *STACK.lock().map_err(|_| NetError::NotStarted)? = Some(stack);

    let driver_shared = shared.clone();
    let name = alloc::format!("net-driver {}", dev.name());
    dev.rearm();
    rhea::thread::Builder::new()
        .name(&name)
        .priority(priority(config.driver_priority)?)
        .kernel()
        .spawn(move || driver_loop(dev, &driver_shared, rx_prod, tx_cons))
        .map_err(|_| NetError::NoThread)?;
    let net_shared = shared.clone();
    rhea::thread::Builder::new()
        .name("net")
        .priority(priority(config.net_priority)?)
        .kernel()
        .spawn(move || net_loop(&net_shared))
        .map_err(|_| NetError::NoThread)?;
    Ok(())
}

fn priority(p: u8) -> Result<rhea::thread::Priority, NetError> {
    rhea::thread::Priority::new(u32::from(p)).map_err(|_| NetError::InvalidInput)
}

/// The longest the driver thread sleeps without an event (it re-checks the device: a lost
/// interrupt costs at most this much).
const DRIVER_IDLE: Duration = Duration::from_millis(100);

fn driver_loop(
    mut dev: Box<dyn NetDevice>,
    sh: &Shared,
    mut rx: Producer<Box<Frame>>,
    mut tx: Consumer<Box<Frame>>,
) {
    let c = &sh.counters;
    let mut pending: Option<Box<Frame>> = None;
    loop {
        sh.driver_event.wait(Some(DRIVER_IDLE));
        dev.handle_interrupt();
        // Whether the round ended with the receive ring full.
        let blocked = loop {
            let mut received = false;
            let mut sent = false;
            let mut stalled = false;
            // Receive until the device is empty, the pool is, or the ring is full. A full ring
            // stops the reading (the device queues, then drops, what comes next) until the
            // network thread has drained it: reading on only to drop would keep this thread,
            // more important than the network thread, busy forever under a flood.
            loop {
                if rx.is_full() {
                    c.rx_backpressure.fetch_add(1, Ordering::Relaxed);
                    sh.rx_blocked.store(true, Ordering::Release);
                    stalled = true;
                    break;
                }
                let Some(mut buf) = sh.take_frame() else {
                    c.pool_empty.fetch_add(1, Ordering::Relaxed);
                    sh.starved.store(true, Ordering::Release);
                    break;
                };
                match dev.receive(&mut buf.data[..MAX_FRAME]) {
                    Ok(Some(n)) => {
                        buf.len = n;
                        match rx.push(buf) {
                            Ok(()) => {
                                c.rx_frames.fetch_add(1, Ordering::Relaxed);
                                rhea::trace::frame(false, 0, n);
                                received = true;
                            }
                            Err(full) => {
                                let total = c.rx_ring_full.fetch_add(1, Ordering::Relaxed) + 1;
                                rhea::trace::frame_dropped(0, DropWhy::RxQueueFull, total);
                                sh.give_back(full.into_inner());
                            }
                        }
                    }
                    Ok(None) => {
                        sh.give_back(buf);
                        break;
                    }
                    Err(_) => {
                        let total = c.device_errors.fetch_add(1, Ordering::Relaxed) + 1;
                        rhea::trace::frame_dropped(0, DropWhy::DeviceError, total);
                        sh.give_back(buf);
                        break;
                    }
                }
            }
            // Send what the network thread queued, keeping one the device had no room for.
            while let Some(frame) = pending.take().or_else(|| tx.pop()) {
                match dev.transmit(&frame.data[..frame.len]) {
                    Ok(()) => {
                        c.tx_frames.fetch_add(1, Ordering::Relaxed);
                        rhea::trace::frame(true, 0, frame.len);
                        sh.give_back(frame);
                        sent = true;
                    }
                    Err(DevError::Busy) => {
                        pending = Some(frame);
                        break;
                    }
                    Err(_) => {
                        let total = c.device_errors.fetch_add(1, Ordering::Relaxed) + 1;
                        rhea::trace::frame_dropped(0, DropWhy::DeviceError, total);
                        sh.give_back(frame);
                    }
                }
            }
            // One notification for the buffers of this round (reposted receive buffers,
            // frames to send), not one per buffer.
            dev.flush();
            if received || stalled {
                sh.net_event.signal();
            }
            if stalled || (!received && !sent) {
                break stalled;
            }
        };
        *sh.device.lock() = dev.stats();
        sh.driver_event.rearm();
        // A device with frames waiting says so, but with the ring full going round again
        // would only find it full again (measured under the flood with e1000e: 5 rounds per
        // datagram, each a few register accesses, i.e. VM exits): the network thread wakes
        // this one when it has drained the ring.
        if dev.rearm() && !blocked {
            sh.driver_event.signal();
        }
    }
}

/// smoltcp's view of the rings.
struct Adapter<'a> {
    shared: &'a Shared,
    rx: Option<&'a mut Consumer<Box<Frame>>>,
    tx: Option<&'a mut Producer<Box<Frame>>>,
    /// Whether a frame was queued for the driver during this poll.
    sent: bool,
    /// Whether a received frame was handed to smoltcp during this poll.
    received: bool,
    /// Where ARP heard from neighbours is noted (during polls).
    neighbours: Option<&'a mut Neighbours>,
    /// Our address (neighbours are noted once it is known).
    ours: Option<Ipv4Cidr>,
    /// Our hardware address.
    mac: [u8; 6],
    now_ms: u64,
    /// A received frame held back while a synthetic ARP request teaching smoltcp its
    /// sender goes first.
    stashed: Option<Box<Frame>>,
}

impl Drop for Adapter<'_> {
    fn drop(&mut self) {
        if let Some(f) = self.stashed.take() {
            self.shared.give_back(f);
        }
    }
}

impl Adapter<'_> {
    /// What a received frame teaches about neighbours (`neighbours::learn`): the sender to
    /// teach smoltcp, if any.
    fn snoop(&mut self, frame: &[u8]) -> Option<(Ipv4Address, [u8; 6])> {
        let (Some(n), Some(ours)) = (self.neighbours.as_deref_mut(), self.ours) else {
            return None;
        };
        neighbours::learn(frame, ours, n, self.now_ms)
    }

    /// An ARP request from `ip` at `mac` for our address, in a pool buffer: what smoltcp
    /// learns a neighbour from.
    fn synthetic_arp(&self, ip: Ipv4Address, mac: [u8; 6]) -> Option<Box<Frame>> {
        let ours = self.ours?.address();
        let mut f = self.shared.take_frame()?;
        f.len = neighbours::arp_request(ip, mac, ours, self.mac, &mut f.data);
        Some(f)
    }
}

/// A received frame for smoltcp. Its buffer returns to the pool however the token ends —
/// consumed or dropped (smoltcp drops the unused half of a receive/transmit token pair).
struct Rx<'a> {
    frame: Option<Box<Frame>>,
    shared: &'a Shared,
}

/// A pool buffer smoltcp may fill and send; returned to the pool if dropped unused.
struct Tx<'a> {
    frame: Option<Box<Frame>>,
    shared: &'a Shared,
    ring: Option<&'a mut Producer<Box<Frame>>>,
    sent: &'a mut bool,
}

impl Drop for Rx<'_> {
    fn drop(&mut self) {
        if let Some(f) = self.frame.take() {
            self.shared.give_back(f);
        }
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if let Some(f) = self.frame.take() {
            self.shared.give_back(f);
        }
    }
}

impl phy::RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(mut self, f: F) -> R {
        let frame = self.frame.take().expect("a token is consumed once");
        let r = f(&frame.data[..frame.len]);
        self.shared.give_back(frame);
        r
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(mut self, len: usize, f: F) -> R {
        let mut frame = self.frame.take().expect("a token is consumed once");
        let len = len.min(FRAME_BYTES);
        frame.len = len;
        let r = f(&mut frame.data[..len]);
        match self.ring.take() {
            Some(ring) => match ring.push(frame) {
                Ok(()) => *self.sent = true,
                Err(full) => {
                    let total = self
                        .shared
                        .counters
                        .tx_ring_full
                        .fetch_add(1, Ordering::Relaxed)
                        + 1;
                    rhea::trace::frame_dropped(0, DropWhy::TxQueueFull, total);
                    self.shared.give_back(full.into_inner());
                }
            },
            None => self.shared.give_back(frame),
        }
        r
    }
}

impl phy::Device for Adapter<'_> {
    type RxToken<'b>
        = Rx<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = Tx<'b>
    where
        Self: 'b;

    fn receive(
        &mut self,
        _: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = match self.stashed.take() {
            Some(f) => f,
            None => loop {
                let f = self.rx.as_mut()?.pop()?;
                match validate::check(&f.data[..f.len]) {
                    Ok(()) => {
                        if let Some((ip, mac)) = self.snoop(&f.data[..f.len])
                            && let Some(arp) = self.synthetic_arp(ip, mac)
                        {
                            // The ARP first: smoltcp answers the packet knowing its sender.
                            self.stashed = Some(f);
                            break arp;
                        }
                        break f;
                    }
                    Err(kind) => {
                        self.shared.malformed.lock().count(kind);
                        rhea::trace::frame_dropped(0, DropWhy::Malformed, 0);
                        self.shared.give_back(f);
                    }
                }
            },
        };
        self.received = true;
        let Some(tx_buf) = self.shared.take_frame() else {
            self.shared
                .counters
                .pool_empty
                .fetch_add(1, Ordering::Relaxed);
            // Without a buffer to answer with, the frame cannot be handled now: drop it.
            self.shared.give_back(frame);
            return None;
        };
        Some((
            Rx {
                frame: Some(frame),
                shared: self.shared,
            },
            Tx {
                frame: Some(tx_buf),
                shared: self.shared,
                ring: self.tx.as_deref_mut(),
                sent: &mut self.sent,
            },
        ))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        let Some(frame) = self.shared.take_frame() else {
            self.shared
                .counters
                .pool_empty
                .fetch_add(1, Ordering::Relaxed);
            return None;
        };
        Some(Tx {
            frame: Some(frame),
            shared: self.shared,
            ring: self.tx.as_deref_mut(),
            sent: &mut self.sent,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps.max_burst_size = Some(16);
        // Received frames reach smoltcp only through `validate::check`, which has verified the
        // IPv4 header checksum and the TCP, UDP and ICMP checksums already: smoltcp computes
        // them for what it sends and does not verify them a second time.
        caps.checksum.ipv4 = Checksum::Tx;
        caps.checksum.tcp = if self.shared.tcp_checksum_offload {
            // Nor computed: the driver leaves it to the device (virtio-net `CSUM`).
            Checksum::None
        } else {
            Checksum::Tx
        };
        caps.checksum.udp = Checksum::Tx;
        caps.checksum.icmpv4 = Checksum::Tx;
        caps
    }
}

/// The longest the network thread sleeps when smoltcp names no deadline.
const NET_IDLE: Duration = Duration::from_millis(100);

fn net_loop(sh: &Shared) {
    loop {
        let delay = {
            let Ok(mut g) = STACK.lock() else { continue };
            let Some(s) = g.as_mut() else { return };
            let now = now();
            let now_ms = socket::now_ms();
            let our_mac = match s.iface.hardware_addr() {
                HardwareAddress::Ethernet(EthernetAddress(m)) => m,
            };
            let mut adapter = Adapter {
                shared: sh,
                rx: Some(&mut s.rx),
                tx: Some(&mut s.tx),
                sent: false,
                received: false,
                neighbours: Some(&mut s.neighbours),
                ours: s.address,
                mac: our_mac,
                now_ms,
                stashed: None,
            };
            let changed = s.iface.poll(now, &mut adapter, &mut s.sockets);
            let (sent, received) = (adapter.sent, adapter.received);
            drop(adapter);
            sh.counters.polls.fetch_add(1, Ordering::Relaxed);
            // The ring is drained (poll takes every queued frame): a driver that stopped for
            // backpressure may read again.
            let unblocked = sh.rx_blocked.swap(false, Ordering::AcqRel);
            if sent || unblocked {
                sh.driver_event.signal();
            }
            dhcp_update(s);
            socket::maintain(s, now_ms);
            // smoltcp reports an ACK that freed send-buffer room as a processed packet, not a
            // state change: any traffic may let a waiting socket call progress.
            if changed == PollResult::SocketStateChanged || received || sent {
                s.generation += 1;
                CHANGED.notify_all();
            }
            s.iface.poll_delay(now, &s.sockets)
        };
        let wait = delay.map_or(NET_IDLE, |d| {
            Duration::from_micros(d.total_micros()).min(NET_IDLE)
        });
        if !wait.is_zero() {
            sh.net_event.wait(Some(wait));
        }
    }
}

fn dhcp_update(s: &mut Stack) {
    let Some(h) = s.dhcp else { return };
    let event = s.sockets.get_mut::<dhcpv4::Socket>(h).poll();
    match event {
        None => {}
        Some(dhcpv4::Event::Configured(cfg)) => {
            s.iface.update_ip_addrs(|a| {
                a.clear();
                let _ = a.push(IpCidr::Ipv4(cfg.address));
            });
            match cfg.router {
                Some(r) => {
                    let _ = s.iface.routes_mut().add_default_ipv4_route(r);
                }
                None => {
                    s.iface.routes_mut().remove_default_ipv4_route();
                }
            }
            s.gateway = cfg.router;
            s.address = Some(cfg.address);
            rhea::println!(
                "rhea-net: dhcp: {} via {}",
                cfg.address,
                cfg.router.map_or(
                    alloc::string::String::from("no router"),
                    |r| alloc::format!("{r}")
                )
            );
            CHANGED.notify_all();
        }
        Some(dhcpv4::Event::Deconfigured) => {
            s.iface.update_ip_addrs(|a| a.clear());
            s.iface.routes_mut().remove_default_ipv4_route();
            s.gateway = None;
            // (smoltcp also reports this once at start, before any lease.)
            if s.address.take().is_some() {
                rhea::println!("rhea-net: dhcp: lease lost");
            }
        }
    }
}
