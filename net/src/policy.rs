//! The network stack's resource policy, free of the kernel and of smoltcp's sockets so it is
//! unit-tested on the host (`socket.rs` and `stack.rs` apply it):
//!
//! - [`Budget`]: the bytes of socket buffers the stack may hold. Every socket's buffers are
//!   taken from it before they are allocated and given back when the socket is removed, so a
//!   peer opening connections meets a refusal, never an exhausted heap.
//! - [`PeerLimits`]: a listener's live connections, in total and per peer address, so one
//!   client farm cannot take every connection of a service.
//! - [`recycle`]: which half-open connection of a listener's backlog to give up, so SYNs from
//!   peers that never complete the handshake cannot keep a port closed.
//! - [`Neighbours`]: on-link addresses recently heard from (ARP aimed at us), which decides
//!   whether a UDP datagram's next hop will resolve: datagrams to known neighbours go out on
//!   a lane of their own, so one that can never be sent cannot hold up the others.

use alloc::vec::Vec;
use smoltcp::wire::{IpAddress, Ipv4Address, Ipv4Cidr};

/// Bytes of socket buffers, taken and given back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    limit: usize,
    used: usize,
}

impl Budget {
    /// A budget of `limit` bytes, none used.
    pub const fn new(limit: usize) -> Budget {
        Budget { limit, used: 0 }
    }

    /// Takes `bytes` if they fit.
    pub fn try_take(&mut self, bytes: usize) -> bool {
        match self.used.checked_add(bytes) {
            Some(u) if u <= self.limit => {
                self.used = u;
                true
            }
            _ => false,
        }
    }

    /// Gives back `bytes` taken before.
    pub fn give(&mut self, bytes: usize) {
        debug_assert!(bytes <= self.used, "giving back more than was taken");
        self.used = self.used.saturating_sub(bytes);
    }

    /// Bytes taken.
    pub fn used(&self) -> usize {
        self.used
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// Why a listener refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The listener has its maximum of live connections.
    ListenerFull,
    /// This peer has its maximum of live connections to the listener.
    PeerFull,
}

/// A listener's live (accepted, not yet dropped) connections, in total and per peer.
#[derive(Debug)]
pub struct PeerLimits {
    max_total: usize,
    max_per_peer: usize,
    total: usize,
    /// Peers with at least one live connection, and how many each has.
    peers: Vec<(IpAddress, usize)>,
}

impl PeerLimits {
    /// At most `max_total` live connections, `max_per_peer` from one address (both at least
    /// 1). Allocates its table now: admitting never allocates.
    pub fn new(max_total: usize, max_per_peer: usize) -> PeerLimits {
        let max_total = max_total.max(1);
        PeerLimits {
            max_total,
            max_per_peer: max_per_peer.clamp(1, max_total),
            total: 0,
            peers: Vec::with_capacity(max_total),
        }
    }

    /// Admits one more connection from `peer`, or says why not.
    pub fn admit(&mut self, peer: IpAddress) -> Result<(), Refusal> {
        if self.total >= self.max_total {
            return Err(Refusal::ListenerFull);
        }
        match self.peers.iter_mut().find(|(a, _)| *a == peer) {
            Some((_, n)) if *n >= self.max_per_peer => return Err(Refusal::PeerFull),
            Some((_, n)) => *n += 1,
            // Within capacity: there are at most `total < max_total` entries.
            None => self.peers.push((peer, 1)),
        }
        self.total += 1;
        Ok(())
    }

    /// A connection from `peer` ended.
    pub fn release(&mut self, peer: IpAddress) {
        if let Some(i) = self.peers.iter().position(|(a, _)| *a == peer) {
            self.peers[i].1 -= 1;
            if self.peers[i].1 == 0 {
                self.peers.swap_remove(i);
            }
            self.total -= 1;
        } else {
            debug_assert!(false, "released a peer that was never admitted");
        }
    }

    /// Live connections.
    pub fn live(&self) -> usize {
        self.total
    }

    /// The maximum of live connections.
    pub fn max_total(&self) -> usize {
        self.max_total
    }
}

/// One socket of a listener's backlog, as [`recycle`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Listening: can take the next SYN.
    Listening,
    /// A handshake in progress since this time (ms).
    HalfOpen(u64),
    /// Anything else (established and waiting for `accept`, closing).
    Busy,
}

/// How long a half-open connection may wait for the peer's ACK in any case.
pub const HALF_OPEN_MAX_MS: u64 = 3_000;
/// How long a half-open connection may wait when no socket of its listener is listening:
/// longer than a LAN round trip with a retransmitted SYN-ACK in it, far shorter than TCP's
/// own timeout.
pub const HALF_OPEN_PRESSURED_MS: u64 = 250;

/// Which backlog socket to give up, if any: the oldest half-open one, when it has waited
/// [`HALF_OPEN_MAX_MS`], or [`HALF_OPEN_PRESSURED_MS`] while no socket listens (SYN pressure:
/// the next SYN would find the port closed).
pub fn recycle(now_ms: u64, slots: &[Slot]) -> Option<usize> {
    let oldest = slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Slot::HalfOpen(since) => Some((i, *since)),
            _ => None,
        })
        .min_by_key(|&(_, since)| since)?;
    let age = now_ms.saturating_sub(oldest.1);
    let pressured = !slots.contains(&Slot::Listening);
    (age >= HALF_OPEN_MAX_MS || (pressured && age >= HALF_OPEN_PRESSURED_MS)).then_some(oldest.0)
}

/// How long a neighbour counts as known after we last heard from it (smoltcp's own
/// neighbour-cache lifetime).
pub const NEIGHBOUR_LIFETIME_MS: u64 = 60_000;

/// IPv4 addresses recently heard from (or, with a short lifetime, recently given up), each with its hardware address and when it
/// expires; a fixed number of entries (the oldest-expiring is replaced when full).
#[derive(Debug)]
pub struct Neighbours {
    capacity: usize,
    lifetime_ms: u64,
    entries: Vec<(Ipv4Address, [u8; 6], u64)>,
}

impl Neighbours {
    /// Room for `capacity` (at least 1) addresses, each remembered `lifetime_ms` after it was
    /// last heard from; allocated now.
    pub fn new(capacity: usize, lifetime_ms: u64) -> Neighbours {
        let capacity = capacity.max(1);
        Neighbours {
            capacity,
            lifetime_ms,
            entries: Vec::with_capacity(capacity),
        }
    }

    /// `ip` (at `mac`) was heard from at `now_ms` (an ARP request or reply aimed at us).
    pub fn heard(&mut self, ip: Ipv4Address, mac: [u8; 6], now_ms: u64) {
        let expires = now_ms.saturating_add(self.lifetime_ms);
        if let Some(e) = self.entries.iter_mut().find(|e| e.0 == ip) {
            *e = (ip, mac, expires);
        } else if self.entries.len() < self.capacity {
            self.entries.push((ip, mac, expires));
        } else if let Some(e) = self.entries.iter_mut().min_by_key(|e| e.2) {
            *e = (ip, mac, expires);
        }
    }

    /// `ip` sent us an IPv4 packet from `mac`: a known entry stays known longer (as smoltcp
    /// keeps its own).
    pub fn refresh(&mut self, ip: Ipv4Address, mac: [u8; 6], now_ms: u64) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.0 == ip && e.1 == mac) {
            e.2 = now_ms.saturating_add(self.lifetime_ms);
        }
    }

    /// Whether `ip` was heard from and has not expired.
    pub fn known(&self, ip: Ipv4Address, now_ms: u64) -> bool {
        self.entries.iter().any(|e| e.0 == ip && now_ms < e.2)
    }
}

/// Where a datagram to `dst` goes first: `dst` itself on our subnet (or a broadcast, which
/// needs no resolution: `Some(None)`), else the gateway; `None` when there is no route.
pub fn next_hop(
    dst: Ipv4Address,
    ours: Ipv4Cidr,
    gateway: Option<Ipv4Address>,
) -> Option<Option<Ipv4Address>> {
    if dst.is_broadcast() || ours.broadcast() == Some(dst) || dst.is_multicast() {
        return Some(None);
    }
    if ours.contains_addr(&dst) {
        return Some(Some(dst));
    }
    gateway.map(Some)
}

/// Datagrams whose next hop did not resolve are dropped, not queued, for this long after the
/// last one was given up (a peer that spoofs one source repeatedly stalls nothing).
pub const UNREACHABLE_MS: u64 = 5_000;
/// How long the head datagram of a UDP send lane may wait for its next hop before the lane is
/// flushed.
pub const UDP_STALL_MS: u64 = 500;

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(d: u8) -> IpAddress {
        IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, d))
    }

    #[test]
    fn the_budget_refuses_what_does_not_fit_and_takes_back_what_is_given() {
        let mut b = Budget::new(100);
        assert!(b.try_take(60));
        assert!(!b.try_take(41));
        assert!(b.try_take(40));
        assert!(!b.try_take(1));
        b.give(60);
        assert_eq!(b.used(), 40);
        assert!(!b.try_take(usize::MAX), "overflow is a refusal");
        assert!(b.try_take(60));
    }

    #[test]
    fn peer_limits_bound_each_peer_and_the_total() {
        let mut p = PeerLimits::new(5, 2);
        assert_eq!(p.admit(ip(1)), Ok(()));
        assert_eq!(p.admit(ip(1)), Ok(()));
        assert_eq!(p.admit(ip(1)), Err(Refusal::PeerFull));
        assert_eq!(p.admit(ip(2)), Ok(()));
        assert_eq!(p.admit(ip(3)), Ok(()));
        assert_eq!(p.admit(ip(4)), Ok(()));
        assert_eq!(p.admit(ip(5)), Err(Refusal::ListenerFull));
        assert_eq!(p.live(), 5);
        p.release(ip(1));
        assert_eq!(p.admit(ip(1)), Ok(()));
        for _ in 0..2 {
            p.release(ip(1));
        }
        for d in 2..5 {
            p.release(ip(d));
        }
        assert_eq!(p.live(), 0);
        assert!(p.peers.is_empty());
        // The table never grows past its first allocation.
        let cap = p.peers.capacity();
        for round in 0..100u8 {
            for d in 0..5u8 {
                p.admit(ip(d.wrapping_add(round))).unwrap();
            }
            for d in 0..5u8 {
                p.release(ip(d.wrapping_add(round)));
            }
        }
        assert_eq!(p.peers.capacity(), cap);
    }

    #[test]
    fn a_half_open_socket_is_recycled_when_old_or_under_pressure() {
        use Slot::*;
        // Nothing half-open: nothing to do.
        assert_eq!(recycle(10_000, &[Listening, Busy]), None);
        // Young, and a socket still listens: kept.
        assert_eq!(recycle(1_000, &[HalfOpen(900), Listening]), None);
        // Old: recycled even though another listens.
        assert_eq!(
            recycle(5_000, &[Listening, HalfOpen(1_000), HalfOpen(1_500)]),
            Some(1)
        );
        // No socket listens: the oldest goes once it waited the short time.
        assert_eq!(recycle(1_100, &[HalfOpen(1_000), HalfOpen(900)]), None);
        assert_eq!(
            recycle(1_200, &[Busy, HalfOpen(1_000), HalfOpen(900)]),
            Some(2)
        );
    }

    #[test]
    fn neighbours_expire_and_the_table_stays_bounded() {
        let a = |d| Ipv4Address::new(10, 0, 0, d);
        let mut n = Neighbours::new(2, NEIGHBOUR_LIFETIME_MS);
        n.heard(a(1), [1; 6], 0);
        assert!(n.known(a(1), 59_999));
        assert!(!n.known(a(1), 60_000));
        n.refresh(a(1), [2; 6], 50_000); // another MAC: no refresh
        assert!(!n.known(a(1), 60_000));
        n.refresh(a(1), [1; 6], 50_000);
        assert!(n.known(a(1), 100_000));
        n.heard(a(2), [2; 6], 1);
        n.heard(a(3), [3; 6], 2); // full: replaces the oldest-expiring (a(2))
        assert!(n.known(a(1), 2) && n.known(a(3), 2) && !n.known(a(2), 2));
        assert_eq!(n.entries.len(), 2);
    }

    #[test]
    fn the_next_hop_is_the_destination_on_link_the_gateway_off_link_or_none() {
        let ours: Ipv4Cidr = "10.0.0.2/24".parse().unwrap();
        let gw = Some(Ipv4Address::new(10, 0, 0, 1));
        let d = Ipv4Address::new(10, 0, 0, 9);
        let far = Ipv4Address::new(192, 0, 2, 1);
        assert_eq!(next_hop(d, ours, None), Some(Some(d)));
        assert_eq!(next_hop(far, ours, None), None);
        assert_eq!(next_hop(far, ours, gw), Some(gw));
        assert_eq!(
            next_hop(Ipv4Address::new(10, 0, 0, 255), ours, None),
            Some(None)
        );
        assert_eq!(next_hop(Ipv4Address::BROADCAST, ours, None), Some(None));
    }
}
