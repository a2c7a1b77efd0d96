//! Valid frames built with smoltcp's own emitters, then broken one way at a time.

use super::*;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpAddress, Ipv4Address, Ipv4Repr,
    UdpRepr,
};
use std::vec;
use std::vec::Vec;

const SRC: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);
const DST: Ipv4Address = Ipv4Address::new(10, 0, 2, 15);

fn ethernet(ethertype: EthernetProtocol, payload: &[u8]) -> Vec<u8> {
    let repr = EthernetRepr {
        src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
        dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
        ethertype,
    };
    let mut buf = vec![0u8; repr.buffer_len() + payload.len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf);
    repr.emit(&mut frame);
    frame.payload_mut().copy_from_slice(payload);
    buf
}

fn ipv4(protocol: IpProtocol, transport: &[u8]) -> Vec<u8> {
    let repr = Ipv4Repr {
        src_addr: SRC,
        dst_addr: DST,
        next_header: protocol,
        payload_len: transport.len(),
        hop_limit: 64,
    };
    let mut buf = vec![0u8; repr.buffer_len() + transport.len()];
    let mut p = Ipv4Packet::new_unchecked(&mut buf);
    repr.emit(&mut p, &ChecksumCapabilities::default());
    p.payload_mut().copy_from_slice(transport);
    ethernet(EthernetProtocol::Ipv4, &buf)
}

fn udp(payload: &[u8]) -> Vec<u8> {
    let repr = UdpRepr {
        src_port: 7000,
        dst_port: 7,
    };
    let mut buf = vec![0u8; repr.header_len() + payload.len()];
    let mut p = UdpPacket::new_unchecked(&mut buf);
    repr.emit(
        &mut p,
        &IpAddress::Ipv4(SRC),
        &IpAddress::Ipv4(DST),
        payload.len(),
        |b| b.copy_from_slice(payload),
        &ChecksumCapabilities::default(),
    );
    ipv4(IpProtocol::Udp, &buf)
}

fn icmp_echo() -> Vec<u8> {
    let data = [7u8; 24];
    let repr = Icmpv4Repr::EchoRequest {
        ident: 1,
        seq_no: 2,
        data: &data,
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut Icmpv4Packet::new_unchecked(&mut buf),
        &ChecksumCapabilities::default(),
    );
    ipv4(IpProtocol::Icmp, &buf)
}

/// Offset of the IPv4 header in our frames.
const IP: usize = 14;

#[test]
fn valid_frames_pass() {
    assert_eq!(check(&udp(b"hello")), Ok(()));
    assert_eq!(check(&icmp_echo()), Ok(()));
    assert_eq!(check(&ethernet(EthernetProtocol::Ipv6, &[0; 40])), Ok(()));
    let arp = [
        0u8, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 0, 2, 2, 0, 0, 0, 0, 0, 0, 10, 0, 2, 15,
    ];
    assert_eq!(check(&ethernet(EthernetProtocol::Arp, &arp)), Ok(()));
}

#[test]
fn each_kind_of_damage_is_named() {
    assert_eq!(check(&[0u8; 10]), Err(Malformed::Truncated));
    assert_eq!(check(&[0u8; 1600]), Err(Malformed::Oversized));
    assert_eq!(
        check(&ethernet(EthernetProtocol::Arp, &[0, 1, 8, 0])),
        Err(Malformed::BadArp)
    );

    let mut f = udp(b"hello");
    f[IP + 10] ^= 0xff; // header checksum
    assert_eq!(check(&f), Err(Malformed::BadIpv4Checksum));

    let mut f = udp(b"hello");
    f[IP] = 0x65; // version 6 in an IPv4 frame
    assert_eq!(check(&f), Err(Malformed::BadIpv4Header));

    let mut f = udp(b"hello");
    f.truncate(IP + 12); // IPv4 header cut short
    assert_eq!(check(&f), Err(Malformed::BadIpv4Header));

    let mut f = udp(b"hello");
    let n = f.len();
    f[n - 1] ^= 0x55; // payload byte: UDP checksum fails
    assert_eq!(check(&f), Err(Malformed::BadTransport));

    let mut f = icmp_echo();
    let n = f.len();
    f[n - 1] ^= 1;
    assert_eq!(check(&f), Err(Malformed::BadTransport));
}

#[test]
fn counters_add_up() {
    let mut c = MalformedCounts::default();
    for m in [
        Malformed::Truncated,
        Malformed::BadTransport,
        Malformed::BadTransport,
    ] {
        c.count(m);
    }
    assert_eq!((c.truncated, c.bad_transport, c.total()), (1, 2, 3));
}

#[test]
fn random_bytes_never_panic() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let base = udp(&[0x42; 64]);
    for i in 0..20_000 {
        let mut f = if i % 2 == 0 {
            base.clone()
        } else {
            vec![0u8; (seed % 1600) as usize]
        };
        for b in f.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if i % 2 == 1 || seed.is_multiple_of(37) {
                *b = seed as u8;
            }
        }
        let _ = check(&f);
    }
}
