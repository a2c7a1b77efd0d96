//! The network stack's resource policy, free of the kernel and of smoltcp's sockets so it is
//! unit-tested on the host (`socket.rs` and `stack.rs` apply it):
//!
//! - [`Budget`]: the bytes of socket buffers the stack may hold. Every socket's buffers are
//!   taken from it before they are allocated and given back when the socket is removed, so a
//!   peer opening connections meets a refusal, never an exhausted heap.
//! - [`PeerLimits`]: a listener's live connections, in total and per peer address, with a
//!   fair share at the limit (a newcomer evicts the oldest connection of the peer holding the
//!   most), so a client farm cannot take every connection of a service.
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
    /// The listener has its maximum of live connections, none of them from a peer holding a
    /// larger share than the newcomer's.
    ListenerFull,
    /// This peer has its maximum of live connections to the listener.
    PeerFull,
}

/// What admitting a connection takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission<K> {
    /// Room for it.
    Admitted,
    /// Room made by evicting connection `.0` (the oldest of the peer holding the most): the
    /// caller resets it. Until its owner drops it, it still counts against the limit, as an
    /// eviction in flight (at most as many as the limit).
    Evict(K),
}

/// One live connection of a listener.
#[derive(Clone, Copy, Debug)]
struct Live<K> {
    key: K,
    peer: IpAddress,
    since: u64,
    evicted: bool,
}

/// A listener's live (accepted, not yet dropped) connections, with a fair share per peer:
/// at most `max_per_peer` from one address, at most `max_total` in all — and at the limit, a
/// newcomer evicts the oldest connection of the peer holding the most, when that peer holds
/// at least two more than the newcomer: a farm of idle connections from a few addresses
/// cannot lock others out.
#[derive(Debug)]
pub struct PeerLimits<K> {
    max_total: usize,
    max_per_peer: usize,
    live: Vec<Live<K>>,
}

impl<K: Copy + PartialEq> PeerLimits<K> {
    /// At most `max_total` live connections, `max_per_peer` from one address (both at least
    /// 1). Allocates its table now: admitting never allocates.
    pub fn new(max_total: usize, max_per_peer: usize) -> PeerLimits<K> {
        let max_total = max_total.max(1);
        PeerLimits {
            max_total,
            max_per_peer: max_per_peer.clamp(1, max_total),
            live: Vec::with_capacity(2 * max_total),
        }
    }

    fn held(&self, peer: IpAddress) -> usize {
        self.live
            .iter()
            .filter(|l| l.peer == peer && !l.evicted)
            .count()
    }

    /// Admits connection `key` from `peer` at `now_ms`, or says why not.
    pub fn admit(&mut self, key: K, peer: IpAddress, now_ms: u64) -> Result<Admission<K>, Refusal> {
        let mine = self.held(peer);
        if mine >= self.max_per_peer {
            return Err(Refusal::PeerFull);
        }
        let counted = self.live.iter().filter(|l| !l.evicted).count();
        let mut admission = Admission::Admitted;
        if counted >= self.max_total {
            if self.live.len() >= self.live.capacity() {
                // As many evictions in flight as the limit: wait for them.
                return Err(Refusal::ListenerFull);
            }
            let heaviest = self
                .live
                .iter()
                .filter(|l| !l.evicted)
                .map(|l| (self.held(l.peer), l.peer))
                .max_by_key(|&(n, _)| n)
                .filter(|&(n, _)| n >= mine + 2)
                .ok_or(Refusal::ListenerFull)?
                .1;
            let victim = self
                .live
                .iter_mut()
                .filter(|l| l.peer == heaviest && !l.evicted)
                .min_by_key(|l| l.since)
                .expect("the heaviest peer holds connections");
            victim.evicted = true;
            admission = Admission::Evict(victim.key);
        }
        self.live.push(Live {
            key,
            peer,
            since: now_ms,
            evicted: false,
        });
        Ok(admission)
    }

    /// Connection `key` ended (its owner dropped it).
    pub fn release(&mut self, key: K) {
        if let Some(i) = self.live.iter().position(|l| l.key == key) {
            self.live.swap_remove(i);
        } else {
            debug_assert!(false, "released a connection that was never admitted");
        }
    }

    /// Live connections (evicted ones still closing included).
    pub fn live(&self) -> usize {
        self.live.len()
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

    /// Whether `ip` is known at `mac` and has not expired.
    pub fn known_at(&self, ip: Ipv4Address, mac: [u8; 6], now_ms: u64) -> bool {
        self.entries
            .iter()
            .any(|e| e.0 == ip && e.1 == mac && now_ms < e.2)
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
/// flushed: longer than smoltcp's one ARP request per second, so a next hop that answers gets
/// its chance.
pub const UDP_STALL_MS: u64 = 1_200;

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
    fn peer_limits_bound_each_peer_and_share_the_total_fairly() {
        let mut p = PeerLimits::new(5, 3);
        let mut key = 0;
        let mut admit = |p: &mut PeerLimits<usize>, d: u8| {
            key += 1;
            p.admit(key, ip(d), key as u64).map(|a| (key, a))
        };
        assert_eq!(admit(&mut p, 1), Ok((1, Admission::Admitted)));
        assert_eq!(admit(&mut p, 1), Ok((2, Admission::Admitted)));
        assert_eq!(admit(&mut p, 1), Ok((3, Admission::Admitted)));
        assert_eq!(admit(&mut p, 1), Err(Refusal::PeerFull));
        assert_eq!(admit(&mut p, 2), Ok((5, Admission::Admitted)));
        assert_eq!(admit(&mut p, 3), Ok((6, Admission::Admitted)));
        // Full: peer 1 holds 3, a newcomer 0: peer 1's oldest (key 1) is evicted.
        assert_eq!(admit(&mut p, 4), Ok((7, Admission::Evict(1))));
        assert_eq!(p.live(), 6, "the evicted one counts until released");
        // Now 1 holds 2, the rest 1 each, newcomer 0: peer 1's next oldest goes.
        assert_eq!(admit(&mut p, 5), Ok((8, Admission::Evict(2))));
        // Everyone holds 1: no peer holds two more than a newcomer; refused.
        assert_eq!(admit(&mut p, 6), Err(Refusal::ListenerFull));
        // The evicted ones end.
        p.release(1);
        p.release(2);
        assert_eq!(p.live(), 5);
        assert_eq!(admit(&mut p, 6), Err(Refusal::ListenerFull));
        p.release(5);
        assert_eq!(admit(&mut p, 6), Ok((11, Admission::Admitted)));
        // The table never grows past its first allocation, whatever the churn.
        let cap = p.live.capacity();
        for k in [3, 6, 7, 8, 11] {
            p.release(k);
        }
        assert_eq!(p.live(), 0);
        for round in 0..200u8 {
            for d in 0..8u8 {
                let _ = p.admit(1000 + usize::from(d), ip(d.wrapping_add(round)), 0);
            }
            for d in 0..8u8 {
                if p.live.iter().any(|l| l.key == 1000 + usize::from(d)) {
                    p.release(1000 + usize::from(d));
                }
            }
        }
        assert_eq!(p.live.capacity(), cap);
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
