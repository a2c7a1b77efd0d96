//! Checks every received frame before smoltcp sees it, so malformed traffic is counted by kind
//! rather than silently dropped: a truncated or oversized Ethernet frame, an IPv4 header with
//! a bad version, length or checksum, a TCP/UDP/ICMP packet whose checksum fails. smoltcp
//! verifies these too; doing it here first is what makes the counters possible. Frames of
//! other ethertypes (ARP is checked for its length) pass.

use smoltcp::wire::{
    ArpPacket, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket,
};

/// What is wrong with a frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Malformed {
    /// Shorter than an Ethernet header.
    Truncated,
    /// Longer than [`rhea_drivers::net::MAX_FRAME`].
    Oversized,
    /// An ARP packet too short for its addresses.
    BadArp,
    /// IPv4: version, header length, total length, or fragment we do not reassemble.
    BadIpv4Header,
    /// IPv4 header checksum.
    BadIpv4Checksum,
    /// TCP, UDP or ICMP checksum, or a transport header shorter than its minimum.
    BadTransport,
}

/// Per-kind counters of malformed frames.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct MalformedCounts {
    /// [`Malformed::Truncated`].
    pub truncated: u64,
    /// [`Malformed::Oversized`].
    pub oversized: u64,
    /// [`Malformed::BadArp`].
    pub bad_arp: u64,
    /// [`Malformed::BadIpv4Header`].
    pub bad_ipv4_header: u64,
    /// [`Malformed::BadIpv4Checksum`].
    pub bad_ipv4_checksum: u64,
    /// [`Malformed::BadTransport`].
    pub bad_transport: u64,
}

impl MalformedCounts {
    /// Counts one.
    pub fn count(&mut self, m: Malformed) {
        let c = match m {
            Malformed::Truncated => &mut self.truncated,
            Malformed::Oversized => &mut self.oversized,
            Malformed::BadArp => &mut self.bad_arp,
            Malformed::BadIpv4Header => &mut self.bad_ipv4_header,
            Malformed::BadIpv4Checksum => &mut self.bad_ipv4_checksum,
            Malformed::BadTransport => &mut self.bad_transport,
        };
        *c += 1;
    }

    /// All kinds together.
    pub fn total(&self) -> u64 {
        self.truncated
            + self.oversized
            + self.bad_arp
            + self.bad_ipv4_header
            + self.bad_ipv4_checksum
            + self.bad_transport
    }
}

/// Checks one received Ethernet frame.
pub fn check(frame: &[u8]) -> Result<(), Malformed> {
    if frame.len() > rhea_drivers::net::MAX_FRAME {
        return Err(Malformed::Oversized);
    }
    let eth = EthernetFrame::new_checked(frame).map_err(|_| Malformed::Truncated)?;
    match eth.ethertype() {
        EthernetProtocol::Arp => ArpPacket::new_checked(eth.payload())
            .map(|_| ())
            .map_err(|_| Malformed::BadArp),
        EthernetProtocol::Ipv4 => check_ipv4(eth.payload()),
        _ => Ok(()),
    }
}

fn check_ipv4(bytes: &[u8]) -> Result<(), Malformed> {
    let ip = Ipv4Packet::new_checked(bytes).map_err(|_| Malformed::BadIpv4Header)?;
    if ip.version() != 4 {
        return Err(Malformed::BadIpv4Header);
    }
    if !ip.verify_checksum() {
        return Err(Malformed::BadIpv4Checksum);
    }
    // Fragments carry partial transport headers: no reassembly here, smoltcp drops them.
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Err(Malformed::BadIpv4Header);
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let payload = ip.payload();
    let ok = match ip.next_header() {
        IpProtocol::Tcp => TcpPacket::new_checked(payload)
            .is_ok_and(|p| p.verify_checksum(&src.into(), &dst.into())),
        IpProtocol::Udp => UdpPacket::new_checked(payload)
            .is_ok_and(|p| p.verify_checksum(&src.into(), &dst.into())),
        IpProtocol::Icmp => payload.len() >= 8 && internet_checksum(payload) == 0,
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(Malformed::BadTransport)
    }
}

/// The ones'-complement sum of `bytes` (RFC 1071), folded; 0 for data carrying a correct
/// checksum.
fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests;
