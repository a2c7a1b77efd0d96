//! The Xen network front end (`io/netif.h`): a [`NetDevice`] over two shared rings.
//!
//! What is negotiated: receive in *copy mode* (`request-rx-copy = 1`: the back end copies each
//! frame into a page we posted, so it never maps our memory for receive), one event channel
//! for both rings, `feature-rx-notify = 1` (we post buffers and the back end may wait for
//! them); refused explicitly: scatter-gather (`feature-sg = 0`), GSO (`feature-gso-tcpv4 = 0`,
//! `feature-gso-tcpv6 = 0`), checksum offload (`feature-no-csum-offload = 1`,
//! `feature-ipv6-csum-offload = 0` — the stack computes checksums itself), multiple queues and
//! split event channels (not written, so absent). Every frame is then one page-sized slot
//! each way.
//!
//! Setup ([`Netfront::connect`]), following the xenbus handshake: our state `Initialising`;
//! wait for the back end's `InitWait`; allocate and grant the TX and RX ring pages, allocate an
//! unbound event channel for the back end's domain, grant a pool of TX pages (read-only, once)
//! and RX pages (writable, one per posted buffer) and post every RX buffer; write
//! `tx-ring-ref`, `rx-ring-ref`, `event-channel`, the feature keys and our state
//! `Connected` in one xenstore transaction (retried on `EAGAIN`) — Linux's netback ignores a
//! front end's `Initialised` and connects when the front end says `Connected` (seen under Xen
//! 4.17 with a Debian 6.1 dom0: a front end waiting in `Initialised` waits forever); wait for
//! the back end's `Connected`; kick the back end. Any failure releases what was set up
//! (grants ended, pages returned, the event channel closed; a page the back end still has
//! mapped is leaked rather than reused) and is returned naming the device.
//!
//! Data path: [`receive`](NetDevice::receive) takes an RX response, copies the frame out of
//! its page and posts the buffer again; [`transmit`](NetDevice::transmit) copies the frame
//! into a free TX page and queues a request; TX responses free their pages (in
//! [`handle_interrupt`](NetDevice::handle_interrupt) and before each transmit);
//! [`rearm`](NetDevice::rearm) is the rings' final check. No call waits.
//!
//! The back end is not trusted: a response whose id is out of range or not outstanding, whose
//! `offset + size` leaves the page, or that carries flags we did not negotiate is counted
//! ([`XenNetStats`]) and dropped; an error status is counted; a response index that runs
//! past the requests outstanding breaks the device (every later call fails with
//! [`NetError::Device`]) — never an access outside our pages.
//!
//! The driver object is owned by the network stack's driver thread: no locks.

use super::grant::GrantRef;
use super::ring::{FrontRing, RingEntry};
use super::shared::PAGE_SIZE;
use super::xenbus::{XenbusDevice, XenbusState, switch_state, wait_for_backend};
use super::xenstore::{Tx, XenStore};
use super::{SharedMem, XenError, XenHost};
use crate::bus::{BindContext, Bound, DeviceId, DeviceInfo, DeviceIrq, Driver};
use crate::net::{MAX_FRAME, NetDevice, NetDeviceStats, NetError};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use rhea_hal::{IrqLine, Trigger};

/// Bytes of an Ethernet header: the shortest frame we send.
const ETH_HEADER: usize = 14;

/// Status of a response (`NETIF_RSP_*`).
pub mod status {
    /// The back end dropped the packet.
    pub const DROPPED: i16 = -2;
    /// The back end failed.
    pub const ERROR: i16 = -1;
    /// Done.
    pub const OKAY: i16 = 0;
    /// A slot without a packet (padding after extra info).
    pub const NULL: i16 = 1;
}

/// Flags of an RX response (`NETRXF_*`).
pub mod rx_flags {
    /// The checksum was validated.
    pub const DATA_VALIDATED: u16 = 1;
    /// The checksum is blank (offload).
    pub const CSUM_BLANK: u16 = 2;
    /// The packet continues in the next slot (scatter-gather).
    pub const MORE_DATA: u16 = 4;
    /// Extra info follows (GSO).
    pub const EXTRA_INFO: u16 = 8;
    /// A GSO prefix.
    pub const GSO_PREFIX: u16 = 16;
}

/// A transmit request (`netif_tx_request`, 12 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TxRequest {
    /// Grant of the page holding the frame.
    pub gref: u32,
    /// Offset of the frame in the page.
    pub offset: u16,
    /// `NETTXF_*` flags.
    pub flags: u16,
    /// Echoed by the response.
    pub id: u16,
    /// Bytes of the frame.
    pub size: u16,
}

/// A transmit response (`netif_tx_response`, 4 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TxResponse {
    /// The request's id.
    pub id: u16,
    /// A [`status`].
    pub status: i16,
}

/// A receive request: a posted buffer (`netif_rx_request`, 8 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RxRequest {
    /// Echoed by the response.
    pub id: u16,
    /// Grant of the page to copy the frame into.
    pub gref: u32,
}

/// A receive response (`netif_rx_response`, 8 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RxResponse {
    /// The buffer's id.
    pub id: u16,
    /// Where the frame starts in the page.
    pub offset: u16,
    /// [`rx_flags`].
    pub flags: u16,
    /// Bytes of the frame if ≥ 0, else a [`status`].
    pub status: i16,
}

impl RingEntry for TxRequest {
    const SIZE: usize = 12;
    fn write(&self, m: &SharedMem, at: usize) -> Result<(), XenError> {
        m.write_u32(at, self.gref)?;
        m.write_u16(at + 4, self.offset)?;
        m.write_u16(at + 6, self.flags)?;
        m.write_u16(at + 8, self.id)?;
        m.write_u16(at + 10, self.size)
    }
    fn read(m: &SharedMem, at: usize) -> Result<Self, XenError> {
        Ok(Self {
            gref: m.read_u32(at)?,
            offset: m.read_u16(at + 4)?,
            flags: m.read_u16(at + 6)?,
            id: m.read_u16(at + 8)?,
            size: m.read_u16(at + 10)?,
        })
    }
}

impl RingEntry for TxResponse {
    const SIZE: usize = 4;
    fn write(&self, m: &SharedMem, at: usize) -> Result<(), XenError> {
        m.write_u16(at, self.id)?;
        m.write_u16(at + 2, self.status as u16)
    }
    fn read(m: &SharedMem, at: usize) -> Result<Self, XenError> {
        Ok(Self {
            id: m.read_u16(at)?,
            status: m.read_u16(at + 2)? as i16,
        })
    }
}

impl RingEntry for RxRequest {
    const SIZE: usize = 8;
    fn write(&self, m: &SharedMem, at: usize) -> Result<(), XenError> {
        m.write_u16(at, self.id)?;
        m.write_u16(at + 2, 0)?;
        m.write_u32(at + 4, self.gref)
    }
    fn read(m: &SharedMem, at: usize) -> Result<Self, XenError> {
        Ok(Self {
            id: m.read_u16(at)?,
            gref: m.read_u32(at + 4)?,
        })
    }
}

impl RingEntry for RxResponse {
    const SIZE: usize = 8;
    fn write(&self, m: &SharedMem, at: usize) -> Result<(), XenError> {
        m.write_u16(at, self.id)?;
        m.write_u16(at + 2, self.offset)?;
        m.write_u16(at + 4, self.flags)?;
        m.write_u16(at + 6, self.status as u16)
    }
    fn read(m: &SharedMem, at: usize) -> Result<Self, XenError> {
        Ok(Self {
            id: m.read_u16(at)?,
            offset: m.read_u16(at + 2)?,
            flags: m.read_u16(at + 4)?,
            status: m.read_u16(at + 6)? as i16,
        })
    }
}

/// The transmit ring.
pub type TxRing = FrontRing<TxRequest, TxResponse>;
/// The receive ring.
pub type RxRing = FrontRing<RxRequest, RxResponse>;

/// Sizes and deadlines of a front end.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NetfrontConfig {
    /// Receive buffers posted (one page each; 1 to 256, the ring's size).
    pub rx_buffers: usize,
    /// Transmit buffers in the pool (one page each; 1 to 256).
    pub tx_buffers: usize,
    /// How long each handshake wait (the back end's `InitWait`, then `Connected`) may take.
    pub connect_timeout_ns: u64,
}

impl Default for NetfrontConfig {
    fn default() -> Self {
        Self {
            rx_buffers: 64,
            tx_buffers: 64,
            connect_timeout_ns: 10_000_000_000,
        }
    }
}

/// What the front end counts beyond [`NetDeviceStats`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct XenNetStats {
    /// Frames refused by `transmit` as longer than [`MAX_FRAME`].
    pub tx_too_large: u64,
    /// TX responses with an error status.
    pub tx_errors: u64,
    /// TX responses with an id out of range or not in flight.
    pub tx_bad_responses: u64,
    /// RX responses with an error status.
    pub rx_errors: u64,
    /// RX responses with an id out of range or not posted, a frame outside the page, or flags
    /// not negotiated.
    pub rx_bad_responses: u64,
    /// Frames longer than [`MAX_FRAME`] or the caller's buffer.
    pub rx_too_large: u64,
}

/// Parses a `mac` key (`00:16:3e:xx:xx:xx`): six two-digit hex bytes separated by colons, not
/// multicast and not all zero.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    if parts.next().is_some() || mac[0] & 1 != 0 || mac == [0; 6] {
        return None;
    }
    Some(mac)
}

/// Memory and channels handed to the back end; released on drop (also when setup fails).
struct Resources {
    host: Arc<dyn XenHost>,
    /// Allocations and the grants on their pages.
    pages: Vec<(SharedMem, Vec<GrantRef>)>,
    port: Option<u32>,
}

impl Resources {
    /// Allocates `count` pages and grants each to `domid`; returns the allocation's index.
    fn grant_pages(
        &mut self,
        what: &'static str,
        count: usize,
        domid: u16,
        readonly: bool,
    ) -> Result<usize, XenError> {
        let mem = self
            .host
            .alloc_shared_pages(count)
            .ok_or(XenError::NoMemory(what))?;
        if mem.len() < count * PAGE_SIZE {
            return Err(XenError::NoMemory(what));
        }
        self.pages.push((mem.clone(), Vec::with_capacity(count)));
        let index = self.pages.len() - 1;
        for i in 0..count {
            let gref = self
                .host
                .grant_table()
                .grant(domid, mem.gfn() + i as u64, readonly)?;
            self.pages[index].1.push(gref);
        }
        Ok(index)
    }

    fn page(&self, alloc: usize, i: usize) -> Result<(SharedMem, GrantRef), XenError> {
        let (mem, grefs) = &self.pages[alloc];
        Ok((mem.page(i)?, grefs[i]))
    }
}

impl Drop for Resources {
    fn drop(&mut self) {
        if let Some(port) = self.port.take() {
            self.host.evtchn_close(port);
        }
        for (mem, grefs) in self.pages.drain(..) {
            let mut all_ended = true;
            for g in grefs {
                if self.host.grant_table().end_access(g).is_err() {
                    all_ended = false;
                }
            }
            if all_ended {
                self.host.free_shared_pages(mem);
            } else {
                // The back end may still write there: never reuse it.
                core::mem::forget(mem);
            }
        }
    }
}

/// A connected network front end.
pub struct Netfront {
    name: String,
    mac: [u8; 6],
    port: u32,
    tx: TxRing,
    rx: RxRing,
    /// TX pool: page and grant per id.
    tx_bufs: Vec<(SharedMem, GrantRef)>,
    tx_free: Vec<u16>,
    tx_in_flight: Vec<bool>,
    /// RX buffers: page and grant per id.
    rx_bufs: Vec<(SharedMem, GrantRef)>,
    rx_posted: Vec<bool>,
    /// Dropping the rest of a multi-slot packet.
    rx_skipping: bool,
    stats: NetDeviceStats,
    xstats: XenNetStats,
    broken: Option<&'static str>,
    /// Last: released after everything that refers to it.
    res: Resources,
}

impl core::fmt::Debug for Netfront {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "Netfront({}, port {}, {:?})",
            self.name, self.port, self.stats
        )
    }
}

impl Netfront {
    /// Connects the front end of `dev` (a `vif` read by [`XenbusBus`](super::xenbus::XenbusBus)
    /// or [`read_device`](super::xenbus::read_device)); see the module documentation for the
    /// steps. Errors name the device.
    pub fn connect(
        host: Arc<dyn XenHost>,
        xs: &XenStore,
        dev: &XenbusDevice,
        config: NetfrontConfig,
    ) -> Result<Netfront, XenError> {
        let name = format!("xen-netfront {}", dev.node);
        for (what, n) in [
            ("rx_buffers", config.rx_buffers),
            ("tx_buffers", config.tx_buffers),
        ] {
            if n == 0 || n > TxRing::SIZE as usize {
                return Err(XenError::Invalid(format!(
                    "{name}: {what} = {n}, not 1 to 256"
                )));
            }
        }
        let node = dev.node.as_str();
        let raw_mac = xs.read(Tx::NONE, &format!("{node}/mac"))?;
        let mac = parse_mac(&raw_mac).ok_or_else(|| {
            XenError::Protocol(format!(
                "{name}: mac {raw_mac:?} is not a unicast MAC address"
            ))
        })?;
        switch_state(xs, Tx::NONE, node, XenbusState::Initialising)?;
        wait_for_backend(
            xs,
            &name,
            &dev.backend,
            XenbusState::InitWait,
            config.connect_timeout_ns,
        )?;

        let mut res = Resources {
            host: host.clone(),
            pages: Vec::new(),
            port: None,
        };
        let domid = dev.backend_id;
        let tx_alloc = res.grant_pages("the TX ring", 1, domid, false)?;
        let rx_alloc = res.grant_pages("the RX ring", 1, domid, false)?;
        let (tx_page, tx_ref) = res.page(tx_alloc, 0)?;
        let (rx_page, rx_ref) = res.page(rx_alloc, 0)?;
        let mut tx = TxRing::new(tx_page)?;
        let mut rx = RxRing::new(rx_page)?;
        let port = host.evtchn_alloc_unbound(domid)?;
        res.port = Some(port);
        let rxb = res.grant_pages("RX buffers", config.rx_buffers, domid, false)?;
        let txb = res.grant_pages("TX buffers", config.tx_buffers, domid, true)?;
        let rx_bufs = (0..config.rx_buffers)
            .map(|i| res.page(rxb, i))
            .collect::<Result<Vec<_>, _>>()?;
        let tx_bufs = (0..config.tx_buffers)
            .map(|i| res.page(txb, i))
            .collect::<Result<Vec<_>, _>>()?;
        for (id, (_, gref)) in rx_bufs.iter().enumerate() {
            rx.put_request(&RxRequest {
                id: id as u16,
                gref: gref.0,
            })?;
        }
        rx.push_requests()?;

        let handshake = || -> Result<(), XenError> {
            xs.transaction(16, |t| {
                let w = |k: &str, v: &str| xs.write(t, &format!("{node}/{k}"), v);
                w("tx-ring-ref", &tx_ref.0.to_string())?;
                w("rx-ring-ref", &rx_ref.0.to_string())?;
                w("event-channel", &port.to_string())?;
                w("request-rx-copy", "1")?;
                w("feature-rx-notify", "1")?;
                w("feature-sg", "0")?;
                w("feature-gso-tcpv4", "0")?;
                w("feature-gso-tcpv6", "0")?;
                w("feature-no-csum-offload", "1")?;
                w("feature-ipv6-csum-offload", "0")?;
                switch_state(xs, t, node, XenbusState::Connected)
            })?;
            wait_for_backend(
                xs,
                &name,
                &dev.backend,
                XenbusState::Connected,
                config.connect_timeout_ns,
            )
            .map(|_| ())
        };
        if let Err(e) = handshake() {
            // Tell the back end to let go of our pages (best effort).
            if matches!(e, XenError::Handshake(_) | XenError::Timeout(_)) {
                let _ = switch_state(xs, Tx::NONE, node, XenbusState::Closed);
            }
            return Err(e);
        }
        // The back end may have gone to sleep before our buffers were published.
        host.evtchn_send(port);
        let n_tx = config.tx_buffers;
        Ok(Netfront {
            name,
            mac,
            port,
            tx: {
                tx.final_check_for_responses()?;
                tx
            },
            rx: {
                rx.final_check_for_responses()?;
                rx
            },
            tx_bufs,
            tx_free: (0..n_tx as u16).rev().collect(),
            tx_in_flight: alloc::vec![false; n_tx],
            rx_posted: alloc::vec![true; rx_bufs.len()],
            rx_bufs,
            rx_skipping: false,
            stats: NetDeviceStats::default(),
            xstats: XenNetStats::default(),
            broken: None,
            res,
        })
    }

    /// The event channel the back end notifies (the device's interrupt line number).
    pub fn port(&self) -> u32 {
        self.port
    }

    /// The counters beyond [`NetDeviceStats`].
    pub fn xen_stats(&self) -> XenNetStats {
        self.xstats
    }

    /// Transmit buffers free now.
    pub fn tx_free(&self) -> usize {
        self.tx_free.len()
    }

    fn notify(&self) {
        self.res.host.evtchn_send(self.port);
    }

    fn ring_broke(&mut self, what: &'static str) -> NetError {
        self.broken = Some(what);
        NetError::Device(what)
    }

    /// Frees the pages of finished transmissions.
    fn reclaim_tx(&mut self) -> Result<(), NetError> {
        loop {
            let rsp = match self.tx.take_response() {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(()),
                Err(_) => {
                    return Err(self.ring_broke("xen-netfront: the back end overran the TX ring"));
                }
            };
            let id = rsp.id as usize;
            if id >= self.tx_in_flight.len() || !self.tx_in_flight[id] {
                self.xstats.tx_bad_responses += 1;
                continue;
            }
            if rsp.status == status::NULL {
                // Padding for extra info we never send: not a completion.
                self.xstats.tx_bad_responses += 1;
                continue;
            }
            if rsp.status < 0 {
                self.xstats.tx_errors += 1;
            }
            self.tx_in_flight[id] = false;
            self.tx_free.push(id as u16);
        }
    }

    /// Posts RX buffer `id` again.
    fn repost(&mut self, id: usize) -> Result<(), NetError> {
        let req = RxRequest {
            id: id as u16,
            gref: self.rx_bufs[id].1.0,
        };
        let pushed = self
            .rx
            .put_request(&req)
            .and_then(|()| self.rx.push_requests());
        match pushed {
            Ok(notify) => {
                self.rx_posted[id] = true;
                if notify {
                    self.notify();
                }
                Ok(())
            }
            Err(_) => {
                Err(self.ring_broke("xen-netfront: the RX ring has no room for a posted buffer"))
            }
        }
    }
}

impl NetDevice for Netfront {
    fn name(&self) -> &str {
        &self.name
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NetError> {
        if let Some(why) = self.broken {
            return Err(NetError::Device(why));
        }
        loop {
            let rsp = match self.rx.take_response() {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(None),
                Err(_) => {
                    return Err(self.ring_broke("xen-netfront: the back end overran the RX ring"));
                }
            };
            let id = rsp.id as usize;
            if id >= self.rx_posted.len() || !self.rx_posted[id] {
                self.xstats.rx_bad_responses += 1;
                self.stats.rx_dropped += 1;
                continue;
            }
            self.rx_posted[id] = false;
            let skipping =
                core::mem::replace(&mut self.rx_skipping, rsp.flags & rx_flags::MORE_DATA != 0);
            let offset = rsp.offset as usize;
            let mut got = None;
            if skipping || rsp.flags & (rx_flags::MORE_DATA | rx_flags::EXTRA_INFO) != 0 {
                // Parts of a multi-slot packet: never negotiated.
                self.xstats.rx_bad_responses += 1;
                self.stats.rx_dropped += 1;
            } else if rsp.status < 0 {
                self.xstats.rx_errors += 1;
                self.stats.rx_dropped += 1;
            } else if offset + rsp.status as usize > PAGE_SIZE {
                self.xstats.rx_bad_responses += 1;
                self.stats.rx_dropped += 1;
            } else if rsp.status as usize > MAX_FRAME.min(buf.len()) {
                self.xstats.rx_too_large += 1;
                self.stats.rx_dropped += 1;
            } else if rsp.status == 0 {
                self.stats.rx_dropped += 1;
            } else {
                let len = rsp.status as usize;
                match self.rx_bufs[id].0.read_bytes(offset, &mut buf[..len]) {
                    Ok(()) => got = Some(len),
                    Err(_) => {
                        self.xstats.rx_bad_responses += 1;
                        self.stats.rx_dropped += 1;
                    }
                }
            }
            self.repost(id)?;
            if let Some(len) = got {
                self.stats.rx_frames += 1;
                return Ok(Some(len));
            }
        }
    }

    fn transmit(&mut self, frame: &[u8]) -> Result<(), NetError> {
        if frame.len() > MAX_FRAME {
            self.xstats.tx_too_large += 1;
            return Err(NetError::TooLarge);
        }
        if frame.len() < ETH_HEADER {
            return Err(NetError::Device(
                "xen-netfront: frame shorter than an Ethernet header",
            ));
        }
        if let Some(why) = self.broken {
            return Err(NetError::Device(why));
        }
        self.reclaim_tx()?;
        if self.tx.is_full() {
            return Err(NetError::Busy);
        }
        let Some(id) = self.tx_free.pop() else {
            return Err(NetError::Busy);
        };
        let (page, gref) = &self.tx_bufs[id as usize];
        let req = TxRequest {
            gref: gref.0,
            offset: 0,
            flags: 0,
            id,
            size: frame.len() as u16,
        };
        let queued = page
            .write_bytes(0, frame)
            .and_then(|()| self.tx.put_request(&req));
        if queued.is_err() {
            self.tx_free.push(id);
            return Err(NetError::Device("xen-netfront: cannot queue a TX request"));
        }
        self.tx_in_flight[id as usize] = true;
        match self.tx.push_requests() {
            Ok(true) => self.notify(),
            Ok(false) => {}
            Err(_) => return Err(self.ring_broke("xen-netfront: the TX ring became unusable")),
        }
        self.stats.tx_frames += 1;
        Ok(())
    }

    fn handle_interrupt(&mut self) {
        self.stats.interrupts += 1;
        if self.broken.is_none() {
            let _ = self.reclaim_tx();
        }
    }

    fn rearm(&mut self) -> bool {
        if self.broken.is_some() {
            return false;
        }
        let rx = self.rx.final_check_for_responses();
        let tx = self.tx.final_check_for_responses();
        match (rx, tx) {
            (Ok(rx), Ok(tx)) => rx || tx,
            _ => {
                self.broken = Some("xen-netfront: the back end overran a ring");
                // Go round once more so the next call reports it.
                true
            }
        }
    }

    fn stats(&self) -> NetDeviceStats {
        self.stats
    }
}

/// Binds Xenbus `vif` devices as [`Netfront`]s.
pub struct XenNetDriver {
    host: Arc<dyn XenHost>,
    xs: Arc<XenStore>,
    config: NetfrontConfig,
}

impl core::fmt::Debug for XenNetDriver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "XenNetDriver({:?})", self.config)
    }
}

impl XenNetDriver {
    /// A driver connecting front ends through `xs` with `host`'s services.
    pub fn new(host: Arc<dyn XenHost>, xs: Arc<XenStore>, config: NetfrontConfig) -> XenNetDriver {
        XenNetDriver { host, xs, config }
    }
}

impl Driver for XenNetDriver {
    fn name(&self) -> &'static str {
        "xen-netfront"
    }

    fn matches(&self, dev: &DeviceInfo) -> bool {
        matches!(&dev.id, DeviceId::Xenbus { kind, .. } if kind == "vif")
    }

    /// Connects the front end; its interrupt is the event channel, as an edge-triggered line
    /// `IrqLine(port)`.
    fn bind(&self, dev: &DeviceInfo, _ctx: &dyn BindContext) -> Result<Bound, String> {
        let DeviceId::Xenbus {
            kind,
            id,
            backend,
            backend_id,
        } = &dev.id
        else {
            return Err("not a Xenbus device".to_string());
        };
        let xdev = XenbusDevice {
            kind: kind.clone(),
            id: *id,
            node: format!("device/{kind}/{id}"),
            backend: backend.clone(),
            backend_id: *backend_id,
        };
        let nf = Netfront::connect(self.host.clone(), &self.xs, &xdev, self.config)
            .map_err(|e| e.to_string())?;
        let line = IrqLine(nf.port());
        Ok(Bound::Net(
            Box::new(nf),
            DeviceIrq::Line(line, Trigger::Edge),
        ))
    }
}

#[cfg(test)]
mod tests;
