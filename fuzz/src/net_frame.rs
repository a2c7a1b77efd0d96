//! `net_frame`: [`rhea_net::validate::check`] on every frame, and every frame it accepts fed to
//! a smoltcp [`Interface`] configured like the appliance's (Ethernet, static 10.0.2.15/24 via
//! 10.0.2.2, TCP listeners on 8080 and 7, a UDP socket on 7, a DHCPv4 client) through an
//! in-memory [`Device`], polled, with the sockets echoing what they receive as the appliance's
//! services do. Invariant: neither the check nor smoltcp panics on any frame sequence.
//!
//! Input: frames, each `[control, len_hi, len_lo, bytes...]`. `control` bit 0 recomputes the
//! IPv4 header and TCP/UDP/ICMP checksums before the check (random bytes almost never carry
//! right ones, and without this the fuzzer would never get past them to smoltcp); bit 1 sets
//! the destination MAC to the interface's; bit 2 the destination IPv4 address to its own;
//! bits 3–7 advance the clock by that many 100 ms before the frame's poll.

use crate::Input;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::{dhcpv4, tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, HardwareAddress, Icmpv4Packet, IpAddress,
    IpCidr, IpProtocol, Ipv4Address, Ipv4Cidr, Ipv4Packet, TcpPacket, UdpPacket,
};
use std::collections::VecDeque;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const IP: Ipv4Address = Ipv4Address::new(10, 0, 2, 15);
const GATEWAY: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);
/// Frames kept by one input at most (each is one poll).
const MAX_FRAMES: usize = 64;

/// The fake NIC: frames to deliver, frames sent (dropped, counted).
struct Nic {
    rx: VecDeque<Vec<u8>>,
    sent: usize,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut usize);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0; len];
        let r = f(&mut buf);
        *self.0 += 1;
        r
    }
}

impl Device for Nic {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((Rx(frame), Tx(&mut self.sent)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.sent))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        // As rhea-net's adapter (net/src/stack.rs).
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = rhea_drivers::net::MAX_FRAME;
        caps.max_burst_size = Some(16);
        caps
    }
}

/// Recomputes the IPv4 header checksum and the transport checksum where the lengths allow.
fn fix_checksums(frame: &mut [u8]) {
    let Ok(mut eth) = EthernetFrame::new_checked(&mut *frame) else {
        return;
    };
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return;
    }
    let Ok(mut ip) = Ipv4Packet::new_checked(eth.payload_mut()) else {
        return;
    };
    ip.fill_checksum();
    let (src, dst) = (
        IpAddress::Ipv4(ip.src_addr()),
        IpAddress::Ipv4(ip.dst_addr()),
    );
    let proto = ip.next_header();
    let payload = ip.payload_mut();
    match proto {
        IpProtocol::Tcp => {
            if let Ok(mut p) = TcpPacket::new_checked(payload) {
                p.fill_checksum(&src, &dst);
            }
        }
        IpProtocol::Udp => {
            if let Ok(mut p) = UdpPacket::new_checked(payload) {
                p.fill_checksum(&src, &dst);
            }
        }
        IpProtocol::Icmp => {
            if let Ok(mut p) = Icmpv4Packet::new_checked(payload) {
                p.fill_checksum();
            }
        }
        _ => {}
    }
}

/// Points the frame at the interface (MAC and/or IPv4 destination).
fn address(frame: &mut [u8], mac: bool, ip: bool) {
    let Ok(mut eth) = EthernetFrame::new_checked(&mut *frame) else {
        return;
    };
    if mac {
        eth.set_dst_addr(EthernetAddress(MAC));
    }
    if ip
        && eth.ethertype() == EthernetProtocol::Ipv4
        && let Ok(mut p) = Ipv4Packet::new_checked(eth.payload_mut())
    {
        p.set_dst_addr(IP);
    }
}

fn tcp_socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 2048]),
        tcp::SocketBuffer::new(vec![0; 2048]),
    )
}

/// The appliance's services in miniature: TCP echo, UDP echo, a listener that reads only.
fn serve(sockets: &mut SocketSet<'_>, tcp_handles: &[(SocketHandle, u16)], udp_h: SocketHandle) {
    let mut buf = [0u8; 1024];
    for &(h, port) in tcp_handles {
        let s = sockets.get_mut::<tcp::Socket>(h);
        if s.can_recv()
            && let Ok(n) = s.recv_slice(&mut buf)
            && port == 7
            && s.can_send()
        {
            let _ = s.send_slice(&buf[..n]);
        }
        if !s.is_open() {
            let _ = s.listen(port);
        } else if s.state() == tcp::State::CloseWait {
            s.close();
        }
    }
    let s = sockets.get_mut::<udp::Socket>(udp_h);
    while let Ok((n, meta)) = s.recv_slice(&mut buf) {
        let _ = s.send_slice(&buf[..n], meta.endpoint);
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let mut nic = Nic {
        rx: VecDeque::new(),
        sent: 0,
    };
    let mut now = Instant::from_secs(1);
    let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(MAC)));
    config.random_seed = 0x5eed;
    let mut iface = Interface::new(config, &mut nic, now);
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(IpAddress::Ipv4(IP), 24));
    });
    let _ = iface.routes_mut().add_default_ipv4_route(GATEWAY);
    let mut sockets = SocketSet::new(Vec::new());
    let mut tcp_handles = Vec::new();
    for port in [8080, 8080, 7] {
        let mut s = tcp_socket();
        s.listen(port).expect("listening on a fixed port");
        tcp_handles.push((sockets.add(s), port));
    }
    let mut u = udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 4096]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 4096]),
    );
    u.bind(7).expect("binding a fixed port");
    let udp_h = sockets.add(u);
    let dhcp_h = sockets.add(dhcpv4::Socket::new());
    let mut neighbours =
        rhea_net::policy::Neighbours::new(16, rhea_net::policy::NEIGHBOUR_LIFETIME_MS);

    for _ in 0..MAX_FRAMES {
        if input.is_empty() {
            break;
        }
        let control = input.u8();
        let len = usize::from(u16::from_be_bytes([input.u8(), input.u8()])) % 1600;
        let mut frame = input.take(len).to_vec();
        // The raw frame first: the check must not panic on anything.
        let raw_verdict = rhea_net::validate::check(&frame);
        if control & 0b110 != 0 {
            address(&mut frame, control & 2 != 0, control & 4 != 0);
        }
        if control & 1 != 0 {
            fix_checksums(&mut frame);
        }
        let verdict = if control & 0b111 == 0 {
            raw_verdict
        } else {
            rhea_net::validate::check(&frame)
        };
        if verdict.is_ok() {
            // What the network thread does with a checked frame: learn neighbours from it,
            // and teach smoltcp the sender with a synthetic ARP request first.
            let ms = (now.total_millis()).max(0) as u64;
            let ours = Ipv4Cidr::new(IP, 24);
            if let Some((ip, mac)) = rhea_net::neighbours::learn(&frame, ours, &mut neighbours, ms)
            {
                let mut arp = [0u8; 64];
                let n = rhea_net::neighbours::arp_request(ip, mac, IP, MAC, &mut arp);
                nic.rx.push_back(arp[..n].to_vec());
            }
            nic.rx.push_back(frame);
        }
        now += Duration::from_millis(100 * u64::from(control >> 3));
        iface.poll(now, &mut nic, &mut sockets);
        // The DHCP client's events: the appliance would apply them; here the static address
        // stays, but the socket's parse of offers and acks runs.
        let _ = sockets.get_mut::<dhcpv4::Socket>(dhcp_h).poll();
        serve(&mut sockets, &tcp_handles, udp_h);
        iface.poll(now, &mut nic, &mut sockets);
    }
    // Let every timer (retransmissions, TIME-WAIT, DHCP) run out.
    for _ in 0..4 {
        now += Duration::from_secs(30);
        iface.poll(now, &mut nic, &mut sockets);
    }
}
