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

use crate::validate::{self, MalformedCounts};
use crate::{Config, IpConfig, NetError};
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use rhea::irq::DeviceEvent;
use rhea::sync::{Condvar, Mutex, MutexGuard};
use rhea::time::Duration;
use rhea_drivers::net::{MAX_FRAME, NetDevice, NetDeviceStats, NetError as DevError};
use rhea_queue::mpmc;
use rhea_queue::spsc::{self, Consumer, Producer};
use smoltcp::iface::{Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::dhcpv4;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Cidr};

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
    /// Wakes the network thread (frames arrived, an app queued work).
    pub(crate) net_event: DeviceEvent,
    /// Wakes the driver thread (its interrupt, frames to send, buffers returned).
    driver_event: DeviceEvent,
    /// Set by the driver when the pool ran dry; the network thread wakes it when buffers return.
    starved: AtomicBool,
    /// Set by the driver when the rx ring was full and it stopped reading the device
    /// (backpressure); the network thread wakes it once it has drained the ring.
    rx_blocked: AtomicBool,
    pub(crate) counters: Counters,
    device: spin::Mutex<NetDeviceStats>,
    malformed: spin::Mutex<MalformedCounts>,
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
        }
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
    /// Sockets whose owner dropped them: removed once closed.
    pub(crate) orphans: Vec<SocketHandle>,
    /// The configured address, once known.
    pub(crate) address: Option<Ipv4Cidr>,
}

pub(crate) static STACK: Mutex<Option<Stack>> = Mutex::new(None);
pub(crate) static CHANGED: Condvar = Condvar::new();
static SHARED: spin::Once<Arc<Shared>> = spin::Once::new();

/// Locks the stack (the network must be started).
pub(crate) fn lock() -> Result<MutexGuard<'static, Option<Stack>>, NetError> {
    let g = STACK.lock().map_err(|_| NetError::NotStarted)?;
    if g.is_none() {
        return Err(NetError::NotStarted);
    }
    Ok(g)
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
        net_event,
        driver_event,
        starved: AtomicBool::new(false),
        rx_blocked: AtomicBool::new(false),
        counters: Counters::default(),
        device: spin::Mutex::new(dev.stats()),
        malformed: spin::Mutex::new(MalformedCounts::default()),
    });
    let (rx_prod, rx_cons) = spsc::ring(config.ring);
    let (tx_prod, tx_cons) = spsc::ring(config.ring);

    let mac = dev.mac();
    let mut adapter = Adapter {
        shared: &shared,
        rx: None,
        tx: None,
        sent: false,
        received: false,
    };
    let mut iface = Interface::new(
        smoltcp::iface::Config::new(HardwareAddress::Ethernet(EthernetAddress(mac))),
        &mut adapter,
        now(),
    );
    let mut sockets = SocketSet::new(Vec::new());
    let mut address = None;
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
    *STACK.lock().map_err(|_| NetError::NotStarted)? = Some(Stack {
        iface,
        sockets,
        rx: rx_cons,
        tx: tx_prod,
        dhcp,
        orphans: Vec::new(),
        address,
    });
    SHARED.call_once(|| shared.clone());

    let driver_shared = shared.clone();
    let name = alloc::format!("net-driver {}", dev.name());
    dev.rearm();
    rhea::thread::Builder::new()
        .name(&name)
        .priority(priority(config.driver_priority)?)
        .spawn(move || driver_loop(dev, &driver_shared, rx_prod, tx_cons))
        .map_err(|_| NetError::NoThread)?;
    let net_shared = shared.clone();
    rhea::thread::Builder::new()
        .name("net")
        .priority(priority(config.net_priority)?)
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
        loop {
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
                let Some(mut buf) = sh.pool.pop() else {
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
                                received = true;
                            }
                            Err(full) => {
                                c.rx_ring_full.fetch_add(1, Ordering::Relaxed);
                                sh.give_back(full.into_inner());
                            }
                        }
                    }
                    Ok(None) => {
                        sh.give_back(buf);
                        break;
                    }
                    Err(_) => {
                        c.device_errors.fetch_add(1, Ordering::Relaxed);
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
                        sh.give_back(frame);
                        sent = true;
                    }
                    Err(DevError::Busy) => {
                        pending = Some(frame);
                        break;
                    }
                    Err(_) => {
                        c.device_errors.fetch_add(1, Ordering::Relaxed);
                        sh.give_back(frame);
                    }
                }
            }
            if received || stalled {
                sh.net_event.signal();
            }
            if stalled || (!received && !sent) {
                break;
            }
        }
        *sh.device.lock() = dev.stats();
        sh.driver_event.rearm();
        if dev.rearm() {
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
                    self.shared
                        .counters
                        .tx_ring_full
                        .fetch_add(1, Ordering::Relaxed);
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
        let frame = loop {
            let f = self.rx.as_mut()?.pop()?;
            match validate::check(&f.data[..f.len]) {
                Ok(()) => break f,
                Err(kind) => {
                    self.shared.malformed.lock().count(kind);
                    self.shared.give_back(f);
                }
            }
        };
        self.received = true;
        let Some(tx_buf) = self.shared.pool.pop() else {
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
        let Some(frame) = self.shared.pool.pop() else {
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
            let mut adapter = Adapter {
                shared: sh,
                rx: Some(&mut s.rx),
                tx: Some(&mut s.tx),
                sent: false,
                received: false,
            };
            let changed = s.iface.poll(now, &mut adapter, &mut s.sockets);
            let (sent, received) = (adapter.sent, adapter.received);
            sh.counters.polls.fetch_add(1, Ordering::Relaxed);
            // The ring is drained (poll takes every queued frame): a driver that stopped for
            // backpressure may read again.
            let unblocked = sh.rx_blocked.swap(false, Ordering::AcqRel);
            if sent || unblocked {
                sh.driver_event.signal();
            }
            dhcp_update(s);
            reap_orphans(s);
            // smoltcp reports an ACK that freed send-buffer room as a processed packet, not a
            // state change: any traffic may let a waiting socket call progress.
            if changed == PollResult::SocketStateChanged || received || sent {
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
            // (smoltcp also reports this once at start, before any lease.)
            if s.address.take().is_some() {
                rhea::println!("rhea-net: dhcp: lease lost");
            }
        }
    }
}

fn reap_orphans(s: &mut Stack) {
    let sockets = &mut s.sockets;
    s.orphans.retain(|&h| {
        let closed = sockets.get::<smoltcp::socket::tcp::Socket>(h).state()
            == smoltcp::socket::tcp::State::Closed;
        if closed {
            sockets.remove(h);
        }
        !closed
    });
}
