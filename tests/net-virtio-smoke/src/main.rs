//! The virtio-net device works end to end without a network stack: an ARP who-has for QEMU
//! user networking's gateway (10.0.2.2, asked by the guest address 10.0.2.15) gets its reply,
//! then an ICMP echo request to the gateway gets its echo reply (slirp answers echo requests
//! to its own addresses itself). Every wait is on the device's interrupt event with a
//! timeout, and at least one reply must have arrived through an interrupt. A frame larger
//! than the maximum is refused.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use rhea::devices::take_net;
use rhea::irq::DeviceEvent;
use rhea::time::Duration;
use rhea_drivers::net::{MAX_FRAME, NetDevice, NetError};

rhea::main!(main);

const GUEST_IP: [u8; 4] = [10, 0, 2, 15];
const GATEWAY_IP: [u8; 4] = [10, 0, 2, 2];
const TIMEOUT: Duration = Duration::from_secs(5);

/// How waiting went.
struct Waiter {
    /// Wake-ups by the device's interrupt.
    irq_wakeups: u32,
}

impl Waiter {
    /// Waits for the device's interrupt, then receives frames until `want` accepts one;
    /// gives up after the timeout. The first wait comes before any receive, so a reply that
    /// arrived is seen through its interrupt (the event stays set if it came before the wait).
    fn until(
        &mut self,
        dev: &mut dyn NetDevice,
        ev: &DeviceEvent,
        want: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), &'static str> {
        let start = rhea::time::now();
        let mut buf = [0u8; MAX_FRAME];
        let mut more = false;
        loop {
            if !more {
                let spent = rhea::time::now().saturating_duration_since(start);
                let Some(left) = TIMEOUT.checked_sub(spent).filter(|d| !d.is_zero()) else {
                    return Err("timed out");
                };
                if ev.wait(Some(left)) {
                    self.irq_wakeups += 1;
                }
            }
            dev.handle_interrupt();
            ev.rearm();
            while let Some(n) = dev.receive(&mut buf).map_err(|_| "receive failed")? {
                // The receive buffer went back to the device: tell it, as the driver thread
                // does after each batch (`NetDevice::flush`).
                dev.flush();
                if want(&buf[..n]) {
                    return Ok(());
                }
            }
            dev.flush();
            more = dev.rearm();
        }
    }
}

fn arp_request(mac: [u8; 6]) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    // Ethernet/IPv4, 6-byte and 4-byte addresses, request.
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&GUEST_IP);
    f[38..42].copy_from_slice(&GATEWAY_IP);
    f
}

/// The gateway's MAC if `f` is its ARP reply to us.
fn arp_reply(f: &[u8]) -> Option<[u8; 6]> {
    let is = f.len() >= 42
        && f[12..14] == [0x08, 0x06]
        && f[20..22] == [0, 2]
        && f[28..32] == GATEWAY_IP
        && f[38..42] == GUEST_IP;
    is.then(|| {
        let mut m = [0; 6];
        m.copy_from_slice(&f[22..28]);
        m
    })
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let word = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

const ECHO_ID: u16 = 0x5248; // "RH"
const ECHO_PAYLOAD: &[u8] = b"rhea virtio-net smoke test";

fn echo_request(mac: [u8; 6], gw: [u8; 6]) -> ([u8; 128], usize) {
    let mut f = [0u8; 128];
    f[0..6].copy_from_slice(&gw);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let icmp_len = 8 + ECHO_PAYLOAD.len();
    let total = 20 + icmp_len;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&1u16.to_be_bytes());
    ip[8] = 64; // TTL
    ip[9] = 1; // ICMP
    ip[12..16].copy_from_slice(&GUEST_IP);
    ip[16..20].copy_from_slice(&GATEWAY_IP);
    let c = checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let icmp = &mut f[34..34 + icmp_len];
    icmp[0] = 8; // echo request
    icmp[4..6].copy_from_slice(&ECHO_ID.to_be_bytes());
    icmp[6..8].copy_from_slice(&1u16.to_be_bytes());
    icmp[8..].copy_from_slice(ECHO_PAYLOAD);
    let c = checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    (f, (14 + total).max(60))
}

fn is_echo_reply(f: &[u8]) -> bool {
    f.len() >= 42 + ECHO_PAYLOAD.len()
        && f[12..14] == [0x08, 0x00]
        && f[23] == 1
        && f[26..30] == GATEWAY_IP
        && f[30..34] == GUEST_IP
        && f[34] == 0
        && f[38..40] == ECHO_ID.to_be_bytes()
        && &f[42..42 + ECHO_PAYLOAD.len()] == ECHO_PAYLOAD
}

fn send(dev: &mut dyn NetDevice, ev: &DeviceEvent, frame: &[u8]) -> Result<(), &'static str> {
    for _ in 0..100 {
        match dev.transmit(frame) {
            Ok(()) => {
                // Notify the device now (drivers may hold notifications until a flush).
                dev.flush();
                return Ok(());
            }
            Err(NetError::Busy) => {
                ev.wait(Some(Duration::from_millis(10)));
                dev.handle_interrupt();
                ev.rearm();
            }
            Err(_) => return Err("transmit failed"),
        }
    }
    Err("transmit queue stayed full")
}

fn main() -> Result<(), &'static str> {
    let (mut dev, ev) = take_net().map_err(|_| "no network device was bound")?;
    let dev: &mut dyn NetDevice = &mut *dev;
    let mac = dev.mac();
    rhea::println!(
        "net-virtio-smoke: {} mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} link {}",
        dev.name(),
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5],
        if dev.link_up() { "up" } else { "down" }
    );
    if dev.transmit(&[0u8; MAX_FRAME + 1]) != Err(NetError::TooLarge) {
        return Err("a frame above MAX_FRAME was not refused as too large");
    }
    let mut w = Waiter { irq_wakeups: 0 };

    send(dev, &ev, &arp_request(mac))?;
    let mut gw = None;
    w.until(dev, &ev, &mut |f| {
        gw = arp_reply(f);
        gw.is_some()
    })
    .map_err(|_| "no ARP reply from 10.0.2.2")?;
    let gw = gw.ok_or("no gateway MAC")?;
    rhea::println!(
        "net-virtio-smoke: ARP reply from 10.0.2.2: {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        gw[0],
        gw[1],
        gw[2],
        gw[3],
        gw[4],
        gw[5]
    );

    let (frame, len) = echo_request(mac, gw);
    send(dev, &ev, &frame[..len])?;
    w.until(dev, &ev, &mut |f| is_echo_reply(f))
        .map_err(|_| "no ICMP echo reply from 10.0.2.2")?;
    rhea::println!("net-virtio-smoke: echo reply from 10.0.2.2");

    let s = dev.stats();
    rhea::println!(
        "net-virtio-smoke: frames rx {} tx {} rx-dropped {}; interrupts handled {}, woken by the interrupt {} times",
        s.rx_frames,
        s.tx_frames,
        s.rx_dropped,
        s.interrupts,
        w.irq_wakeups
    );
    if w.irq_wakeups == 0 {
        return Err("no reply arrived through the device's interrupt");
    }
    if s.tx_frames < 2 || s.rx_frames < 2 {
        return Err("frame counters do not show both exchanges");
    }
    rhea::println!("net-virtio-smoke: PASS");
    Ok(())
}
