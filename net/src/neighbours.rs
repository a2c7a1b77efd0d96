//! What received frames teach about neighbours — pure, host-tested and fuzzed (the network
//! thread runs [`learn`] on every frame that passed `validate::check`).
//!
//! smoltcp fills its neighbour cache only from ARP requests and replies aimed at us, and sends
//! one ARP request per second in all. So a peer that found us by an ARP exchange long ago, or
//! one of many addresses of one host, would cost an ARP round trip before each reply — more
//! than 8 peers cut UDP echo to ~1 reply/s — and a reply to a source that never answers ARP
//! sat at the head of its socket's queue. [`learn`] notes ARP aimed at us the way smoltcp
//! does (into [`Neighbours`], which then mirrors smoltcp's cache), and for an IPv4 packet to
//! us from an on-link sender not known at that hardware address, names the sender: the
//! network thread then hands smoltcp a synthetic ARP request from it ([`arp_request`]) before
//! the packet, so the packet's reply finds its next hop. This learns from the packet what an
//! ARP request from its sender would have taught; ARP is no more authenticated.

use crate::policy::Neighbours;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    Ipv4Address, Ipv4Cidr, Ipv4Packet,
};

/// Whether `a` could be a host on `ours`'s subnet other than us.
fn on_link_host(a: Ipv4Address, ours: Ipv4Cidr) -> bool {
    ours.contains_addr(&a)
        && a != ours.address()
        && ours.broadcast() != Some(a)
        && (ours.prefix_len() > 30 || ours.network().address() != a)
        && !a.is_broadcast()
        && !a.is_multicast()
        && !a.is_unspecified()
}

/// Notes what `frame` teaches into `n` (at `now_ms`); returns the sender smoltcp should be
/// taught with a synthetic ARP request, if any.
pub fn learn(
    frame: &[u8],
    ours: Ipv4Cidr,
    n: &mut Neighbours,
    now_ms: u64,
) -> Option<(Ipv4Address, [u8; 6])> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    match eth.ethertype() {
        EthernetProtocol::Arp => {
            let Ok(ArpRepr::EthernetIpv4 {
                operation,
                source_hardware_addr,
                source_protocol_addr,
                target_protocol_addr,
                ..
            }) = ArpPacket::new_checked(eth.payload()).and_then(|p| ArpRepr::parse(&p))
            else {
                return None;
            };
            if target_protocol_addr == ours.address()
                && matches!(operation, ArpOperation::Request | ArpOperation::Reply)
                && source_hardware_addr.is_unicast()
                && on_link_host(source_protocol_addr, ours)
            {
                n.heard(source_protocol_addr, source_hardware_addr.0, now_ms);
            }
            None
        }
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            let (src, mac) = (ip.src_addr(), eth.src_addr());
            if ip.dst_addr() != ours.address() {
                return None;
            }
            if n.known_at(src, mac.0, now_ms) {
                n.refresh(src, mac.0, now_ms);
                return None;
            }
            if on_link_host(src, ours) && mac.is_unicast() {
                n.heard(src, mac.0, now_ms);
                return Some((src, mac.0));
            }
            None
        }
        _ => None,
    }
}

/// Writes into `out` an Ethernet frame carrying an ARP request from `ip` at `mac` for
/// `ours` (sent to `our_mac`); returns its length (42). `out` must hold 42 bytes.
pub fn arp_request(
    ip: Ipv4Address,
    mac: [u8; 6],
    ours: Ipv4Address,
    our_mac: [u8; 6],
    out: &mut [u8],
) -> usize {
    let repr = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(mac),
        source_protocol_addr: ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: ours,
    };
    let len = 14 + repr.buffer_len();
    let mut eth = EthernetFrame::new_unchecked(&mut out[..len]);
    eth.set_dst_addr(EthernetAddress(our_mac));
    eth.set_src_addr(EthernetAddress(mac));
    eth.set_ethertype(EthernetProtocol::Arp);
    repr.emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::NEIGHBOUR_LIFETIME_MS;
    use alloc::vec;
    use alloc::vec::Vec;
    use smoltcp::wire::{IpProtocol, Ipv4Repr};

    const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

    fn ours() -> Ipv4Cidr {
        "10.0.0.2/24".parse().unwrap()
    }

    fn ipv4_frame(src: Ipv4Address, dst: Ipv4Address, mac: [u8; 6]) -> Vec<u8> {
        let repr = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Udp,
            payload_len: 0,
            hop_limit: 64,
        };
        let mut f = vec![0u8; 14 + repr.buffer_len()];
        let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
        eth.set_dst_addr(EthernetAddress(OUR_MAC));
        eth.set_src_addr(EthernetAddress(mac));
        eth.set_ethertype(EthernetProtocol::Ipv4);
        repr.emit(
            &mut Ipv4Packet::new_unchecked(eth.payload_mut()),
            &Default::default(),
        );
        f
    }

    fn a(d: u8) -> Ipv4Address {
        Ipv4Address::new(10, 0, 0, d)
    }

    #[test]
    fn an_ipv4_sender_on_link_is_taught_once_then_refreshed() {
        let mut n = Neighbours::new(8, NEIGHBOUR_LIFETIME_MS);
        let f = ipv4_frame(a(9), a(2), PEER_MAC);
        assert_eq!(learn(&f, ours(), &mut n, 0), Some((a(9), PEER_MAC)));
        assert!(n.known_at(a(9), PEER_MAC, 1));
        // Known: no second lesson, but it stays known.
        assert_eq!(learn(&f, ours(), &mut n, 50_000), None);
        assert!(n.known(a(9), 100_000));
        // At another hardware address: taught again.
        let g = ipv4_frame(a(9), a(2), [2, 0, 0, 0, 0, 8]);
        assert_eq!(
            learn(&g, ours(), &mut n, 60_000),
            Some((a(9), [2, 0, 0, 0, 0, 8]))
        );
    }

    #[test]
    fn senders_that_cannot_be_neighbours_teach_nothing() {
        let mut n = Neighbours::new(8, NEIGHBOUR_LIFETIME_MS);
        for (src, dst, mac) in [
            (Ipv4Address::new(192, 0, 2, 1), a(2), PEER_MAC), // off-link
            (a(255), a(2), PEER_MAC),                         // the subnet's broadcast
            (a(0), a(2), PEER_MAC),                           // its network address
            (a(2), a(2), PEER_MAC),                           // us
            (a(9), a(3), PEER_MAC),                           // not to us
            (a(9), a(2), [0xff; 6]),                          // broadcast hardware source
            (a(9), a(2), [1, 0, 0x5e, 0, 0, 1]),              // multicast hardware source
        ] {
            let f = ipv4_frame(src, dst, mac);
            assert_eq!(learn(&f, ours(), &mut n, 0), None, "{src} -> {dst}");
        }
        assert!(!n.known(a(9), 0));
        // Garbage and truncated frames teach nothing either.
        assert_eq!(learn(&[0u8; 3], ours(), &mut n, 0), None);
        assert_eq!(learn(&[0xffu8; 60], ours(), &mut n, 0), None);
    }

    #[test]
    fn the_synthetic_request_is_what_arp_aimed_at_us_teaches_from() {
        let mut out = [0u8; 64];
        let len = arp_request(a(9), PEER_MAC, a(2), OUR_MAC, &mut out);
        assert_eq!(len, 42);
        let eth = EthernetFrame::new_checked(&out[..len]).unwrap();
        assert_eq!(eth.dst_addr(), EthernetAddress(OUR_MAC));
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap(),
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Request,
                source_hardware_addr: EthernetAddress(PEER_MAC),
                source_protocol_addr: a(9),
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: a(2),
            }
        );
        // And `learn` notes such a request as smoltcp does (nothing more to teach).
        let mut n = Neighbours::new(8, NEIGHBOUR_LIFETIME_MS);
        assert_eq!(learn(&out[..len], ours(), &mut n, 0), None);
        assert!(n.known_at(a(9), PEER_MAC, 0));
    }
}
