//! Transmit offloads for virtio-net, without unsafe code and host-tested: the TCP checksum
//! left to the device (`VIRTIO_NET_F_CSUM`) and consecutive TCP segments of one connection
//! sent as one large segment that the device (or whatever is behind it: QEMU passes it to the
//! host kernel through the tap's virtio-net header) cuts back into segments
//! (`VIRTIO_NET_F_HOST_TSO4`).
//!
//! Why: under emulation every frame costs the device model a register write, a ring walk and
//! a system call on the host, and the host's TCP an acknowledgement; `cargo xtask bench net`
//! measured ~800 transmitted frames per MiB echoed. smoltcp emits at most one MSS per
//! segment, so the driver joins what smoltcp sent back to back (same connection, contiguous
//! sequence numbers, same ACK and window, plain ACK flags, full-sized but for the last) into
//! one frame of up to [`TSO_BYTES`], as a Linux guest's stack does before its NIC.

/// virtio-net header flag: the device computes the checksum at `csum_start + csum_offset`
/// over `[csum_start, end)`, the field holding the pseudo-header sum.
pub const HDR_F_NEEDS_CSUM: u8 = 1;
/// virtio-net header GSO type: TCP over IPv4.
pub const HDR_GSO_TCPV4: u8 = 1;

/// Bytes of a joined frame at most (Ethernet header included): what one poll of smoltcp
/// sends of the appliance's 32 KiB echo writes; 24 KiB gave 16 KiB frames, 32 KiB up to 21
/// segments (`bench net`, q35 TCG). The host's window is larger than either.
pub const TSO_BYTES: usize = 32 * 1024;

const ETH: usize = 14;
const IP: usize = 20;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A TCP/IPv4 frame without IP options, as the offloads see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Bytes of the frame without padding.
    pub len: usize,
    /// Bytes of the Ethernet, IPv4 and TCP headers.
    pub headers: usize,
    /// Bytes of TCP payload.
    pub payload: usize,
    seq: u32,
    flags: u8,
}

/// The TCP/IPv4 frame in `frame` (IPv4 without options or fragments, the lengths consistent),
/// or `None` for anything else.
pub fn segment(frame: &[u8]) -> Option<Segment> {
    if frame.len() < ETH + IP + 20 || be16(frame, 12) != 0x0800 {
        return None;
    }
    let ip = &frame[ETH..];
    if ip[0] != 0x45 || ip[9] != 6 || be16(ip, 6) & 0x3fff != 0 {
        return None;
    }
    let total = usize::from(be16(ip, 2));
    if total > frame.len() - ETH {
        return None;
    }
    let thl = usize::from(ip[IP + 12] >> 4) * 4;
    if thl < 20 || IP + thl > total {
        return None;
    }
    Some(Segment {
        len: ETH + total,
        headers: ETH + IP + thl,
        payload: total - IP - thl,
        seq: be32(ip, IP + 4),
        flags: ip[IP + 13],
    })
}

/// The ones'-complement sum of `bytes` (big-endian 16-bit words), folded, added to `sum`.
fn sum16(mut sum: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// Makes the headers of the TCP/IPv4 frame `frame` (one [`segment`] accepts) right for the
/// device to finish: the IPv4 total length and header checksum for the frame's length, the
/// TCP checksum field the pseudo-header sum (what `HDR_F_NEEDS_CSUM` wants there).
pub fn finish_headers(frame: &mut [u8]) {
    let total = frame.len() - ETH;
    let ip = &mut frame[ETH..];
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[10..12].fill(0);
    let c = !(sum16(0, &ip[..IP]) as u16);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let tcp_len = (total - IP) as u32;
    let pseudo = sum16(6 + tcp_len, &ip[12..20]);
    ip[IP + 16..IP + 18].copy_from_slice(&(pseudo as u16).to_be_bytes());
}

/// Computes the TCP checksum of an IPv4/TCP frame in full, if it is one (for frames
/// [`segment`] does not take: IPv4 options; the stack leaves TCP checksums to the driver).
pub fn software_checksum(frame: &mut [u8]) {
    if frame.len() < ETH + IP || be16(frame, 12) != 0x0800 || frame[ETH + 9] != 6 {
        return;
    }
    let ihl = usize::from(frame[ETH] & 0xf) * 4;
    let total = usize::from(be16(frame, ETH + 2));
    if ihl < IP || total < ihl + 20 || ETH + total > frame.len() {
        return;
    }
    let ip = &mut frame[ETH..ETH + total];
    ip[ihl + 16..ihl + 18].fill(0);
    let pseudo = sum16(6 + (total - ihl) as u32, &ip[12..20]);
    let c = !(sum16(pseudo, &ip[ihl..]) as u16);
    ip[ihl + 16..ihl + 18].copy_from_slice(&c.to_be_bytes());
}

/// A joined frame being built: its first segment's headers and what has been added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Joined {
    /// The first segment (its headers are the joined frame's).
    pub first: Segment,
    /// Bytes of the frame so far.
    pub len: usize,
    /// Segments in it.
    pub segments: u16,
    next_seq: u32,
    /// Whether nothing more may be added (the last segment was short or pushed).
    closed: bool,
}

impl Joined {
    /// Starts a joined frame with `frame` if it can begin one: a full-sized plain-ACK data
    /// segment that leaves room for another in [`TSO_BYTES`].
    pub fn start(frame: &[u8]) -> Option<Joined> {
        let s = segment(frame)?;
        if s.flags != TCP_ACK || s.payload < 512 || frame.len() + s.payload > TSO_BYTES {
            return None;
        }
        Some(Joined {
            first: s,
            len: frame.len(),
            segments: 1,
            next_seq: s.seq.wrapping_add(s.payload as u32),
            closed: false,
        })
    }

    /// The MSS the device cuts the payload back into.
    pub fn mss(&self) -> usize {
        self.first.payload
    }

    /// Whether `frame` continues this joined frame, whose bytes so far are `joined`: the same
    /// Ethernet and IPv4 addresses, ports, ACK number, window and TCP options, the next
    /// sequence number, ACK (and at most PSH) flags, no more payload than the MSS, and room.
    pub fn continues(&self, joined: &[u8], frame: &[u8]) -> Option<Segment> {
        if self.closed {
            return None;
        }
        let s = segment(frame)?;
        let h = self.first.headers;
        let ok = s.headers == h
            && s.seq == self.next_seq
            && s.flags & !TCP_PSH == TCP_ACK
            && s.payload > 0
            && s.payload <= self.mss()
            && self.len + s.payload <= TSO_BYTES
            // Ethernet header; IPv4 addresses; ports (and not sequence numbers); ACK number,
            // header length, window; TCP options.
            && joined[..ETH] == frame[..ETH]
            && joined[ETH + 12..ETH + IP + 4] == frame[ETH + 12..ETH + IP + 4]
            && joined[ETH + IP + 8..ETH + IP + 13] == frame[ETH + IP + 8..ETH + IP + 13]
            && joined[ETH + IP + 14..ETH + IP + 16] == frame[ETH + IP + 14..ETH + IP + 16]
            && joined[ETH + IP + 20..h] == frame[ETH + IP + 20..h];
        ok.then_some(s)
    }

    /// Notes that `s`'s payload was appended; returns the flags byte the joined header
    /// takes (PSH once the last segment has it).
    pub fn appended(&mut self, s: &Segment) -> u8 {
        self.len += s.payload;
        self.segments += 1;
        self.next_seq = self.next_seq.wrapping_add(s.payload as u32);
        if s.payload < self.mss() || s.flags & TCP_PSH != 0 {
            self.closed = true;
        }
        s.flags
    }

    /// Where the TCP flags byte is in the frame.
    pub fn flags_at(&self) -> usize {
        ETH + IP + 13
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// A TCP/IPv4 frame from 10.0.0.1:1000 to 10.0.0.2:7 with `payload` bytes of `seq`-based
    /// data, its checksums right.
    fn frame(seq: u32, payload: usize, flags: u8) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let total = (IP + 20 + payload) as u16;
        f.extend_from_slice(&[
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        f[ETH + 2..ETH + 4].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&1000u16.to_be_bytes());
        f.extend_from_slice(&7u16.to_be_bytes());
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&77u32.to_be_bytes());
        f.extend_from_slice(&[0x50, flags, 0x10, 0x00, 0, 0, 0, 0]);
        f.extend((0..payload).map(|i| (seq as usize + i) as u8));
        let c = !(sum16(0, &f[ETH..ETH + IP]) as u16);
        f[ETH + 10..ETH + 12].copy_from_slice(&c.to_be_bytes());
        f
    }

    /// The full TCP checksum the device computes from the pseudo-header sum in the field.
    fn device_checksum(f: &mut [u8]) {
        let start = ETH + IP;
        let c = !(sum16(0, &f[start..]) as u16);
        f[start + 16..start + 18].copy_from_slice(&c.to_be_bytes());
    }

    fn valid(f: &[u8]) -> bool {
        let ip = &f[ETH..];
        let tcp_len = (f.len() - ETH - IP) as u32;
        sum16(0, &ip[..IP]) == 0xffff && sum16(sum16(6 + tcp_len, &ip[12..20]), &ip[IP..]) == 0xffff
    }

    #[test]
    fn joins_contiguous_full_segments_and_stops_at_a_short_one() {
        let mss = 1460;
        let a = frame(1000, mss, TCP_ACK);
        let mut j = Joined::start(&a).unwrap();
        let mut out = a.clone();
        for (seq, len, flags) in [(2460, mss, TCP_ACK), (3920, 300, TCP_ACK | TCP_PSH)] {
            let f = frame(seq, len, flags);
            let s = j.continues(&out, &f).unwrap();
            let fl = j.appended(&s);
            out.extend_from_slice(&f[s.headers..]);
            let at = j.flags_at();
            out[at] = fl;
        }
        assert_eq!(j.segments, 3);
        // Closed after the short, pushed one.
        assert!(j.continues(&out, &frame(4220, mss, TCP_ACK)).is_none());
        let first = j.first;
        finish_headers(&mut out);
        device_checksum(&mut out);
        assert!(valid(&out));
        assert_eq!(segment(&out).unwrap().payload, 2 * mss + 300);
        // The payload is the three segments' in order.
        let data: Vec<u8> = (0..2 * mss + 300).map(|i| (1000 + i) as u8).collect();
        assert_eq!(&out[first.headers..], &data[..]);
    }

    #[test]
    fn refuses_what_does_not_continue() {
        let a = frame(1000, 1460, TCP_ACK);
        let j = Joined::start(&a).unwrap();
        assert!(
            j.continues(&a, &frame(2461, 1460, TCP_ACK)).is_none(),
            "gap"
        );
        assert!(
            j.continues(&a, &frame(2460, 1461, TCP_ACK)).is_none(),
            "over mss"
        );
        assert!(
            j.continues(&a, &frame(2460, 100, TCP_ACK | 0x01)).is_none(),
            "FIN"
        );
        let mut other = frame(2460, 1460, TCP_ACK);
        other[ETH + IP + 9] = 1; // another ACK number
        assert!(j.continues(&a, &other).is_none());
        let mut other = frame(2460, 1460, TCP_ACK);
        other[ETH + IP + 2] = 9; // another source port
        assert!(j.continues(&a, &other).is_none());
        assert!(j.continues(&a, &frame(2460, 1460, TCP_ACK)).is_some());
        // Not a start: short, pushed, or not TCP.
        assert!(Joined::start(&frame(1, 100, TCP_ACK)).is_none());
        assert!(Joined::start(&frame(1, 1460, TCP_ACK | TCP_PSH)).is_none());
        let mut udp = frame(1, 1460, TCP_ACK);
        udp[ETH + 9] = 17;
        assert!(Joined::start(&udp).is_none());
        assert!(segment(&udp).is_none());
    }

    #[test]
    fn a_single_segment_gets_its_pseudo_header_sum() {
        let mut f = frame(5, 40, TCP_ACK | TCP_PSH);
        finish_headers(&mut f);
        device_checksum(&mut f);
        assert!(valid(&f));
        // Padding after the IPv4 packet is not part of it.
        let mut f = frame(5, 0, TCP_ACK);
        f.extend_from_slice(&[0; 6]);
        let s = segment(&f).unwrap();
        assert_eq!((s.len, s.payload), (54, 0));
        finish_headers(&mut f[..s.len]);
        device_checksum(&mut f[..s.len]);
        assert!(valid(&f[..s.len]));
        let mut g = frame(9, 33, TCP_ACK);
        software_checksum(&mut g);
        assert!(valid(&g));
    }
}
