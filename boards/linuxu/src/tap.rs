//! The LinuxU network device: a Linux tap interface (`/dev/net/tun`, `IFF_TAP | IFF_NO_PI`),
//! named on the command line with `rhea.net.tap=NAME`. The interface must exist and be up
//! (created by whoever runs the process: `ip tuntap add dev NAME mode tap user $USER`), so the
//! process needs no privilege. Reads and writes are non-blocking; readiness arrives as SIGIO
//! on the descriptor, LinuxU's device interrupt (`DeviceIrq::Line(fd)`, routed like the
//! console's standard input).
#![allow(
    unsafe_code,
    reason = "the TUNSETIFF ioctl passes a struct pointer; the one use has a SAFETY note"
)]

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use rhea_arch::sys;
use rhea_drivers::bus::{BindContext, Bound, Bus, DeviceId, DeviceInfo, DeviceIrq, Driver};
use rhea_drivers::net::{MAX_FRAME, NetDevice, NetDeviceStats, NetError};
use rhea_hal::{IrqLine, Trigger};

/// `TUNSETIFF` (`_IOW('T', 202, int)`, linux/if_tun.h).
const TUNSETIFF: usize = 0x4004_54ca;
const IFF_TAP: u16 = 0x0002;
const IFF_NO_PI: u16 = 0x1000;
const EAGAIN: isize = -11;
/// Interface names are at most 15 bytes (IFNAMSIZ 16 with the NUL).
const IFNAMSIZ: usize = 16;

/// The tap named by `rhea.net.tap=` (if any) as the one device of the "host" bus.
#[derive(Debug)]
pub(crate) struct TapBus;

fn tap_name() -> Option<&'static str> {
    crate::machine::cmdline_str()
        .split_ascii_whitespace()
        .filter_map(|a| a.strip_prefix("rhea.net.tap="))
        .next_back()
}

impl Bus for TapBus {
    fn name(&self) -> &'static str {
        "host"
    }

    fn devices(&mut self) -> Vec<DeviceInfo> {
        tap_name()
            .map(|n| DeviceInfo {
                location: alloc::format!("tap:{n}"),
                id: DeviceId::Host,
            })
            .into_iter()
            .collect()
    }
}

/// Opens the tap a [`TapBus`] device names.
#[derive(Debug)]
pub(crate) struct TapDriver;

pub(crate) static TAP_DRIVER: TapDriver = TapDriver;

impl Driver for TapDriver {
    fn name(&self) -> &'static str {
        "tap"
    }

    fn matches(&self, dev: &DeviceInfo) -> bool {
        dev.id == DeviceId::Host && dev.location.starts_with("tap:")
    }

    fn bind(&self, dev: &DeviceInfo, _ctx: &dyn BindContext) -> Result<Bound, String> {
        let name = &dev.location["tap:".len()..];
        if name.is_empty() || name.len() >= IFNAMSIZ || name.contains('/') {
            return Err(alloc::format!(
                "bad interface name {name:?} (1-15 bytes, no '/')"
            ));
        }
        // TUNSETIFF would create a missing interface (with the privilege to): a name that is
        // not an existing tap, up, is the command line's mistake, not a new device.
        let path = alloc::format!("/sys/class/net/{name}/flags\0");
        let path = core::ffi::CStr::from_bytes_with_nul(path.as_bytes())
            .map_err(|_| alloc::format!("rhea.net.tap={name}: bad interface name"))?;
        let mut flags = [0u8; 32];
        let n = sys::read_small_file(path, &mut flags);
        if n < 0 {
            return Err(alloc::format!(
                "rhea.net.tap={name}: no such interface (errno {}); expected an existing tap, up \
                 (ip tuntap add dev {name} mode tap user $USER; ip link set {name} up)",
                -n
            ));
        }
        let text = core::str::from_utf8(&flags[..n as usize])
            .unwrap_or("")
            .trim();
        let up = u32::from_str_radix(text.trim_start_matches("0x"), 16).is_ok_and(|f| f & 1 != 0);
        if !up {
            return Err(alloc::format!(
                "rhea.net.tap={name}: the interface is down (flags {text}); expected it up \
                 (ip link set {name} up)"
            ));
        }
        let fd = sys::open_rdwr_nonblock(c"/dev/net/tun");
        if fd < 0 {
            return Err(alloc::format!("cannot open /dev/net/tun (errno {})", -fd));
        }
        let fd = fd as i32;
        // struct ifreq: the name, then a union whose first member is `short ifr_flags`.
        let mut ifreq = [0u8; 40];
        ifreq[..name.len()].copy_from_slice(name.as_bytes());
        ifreq[IFNAMSIZ..IFNAMSIZ + 2].copy_from_slice(&(IFF_TAP | IFF_NO_PI).to_ne_bytes());
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq` (40 bytes on x86_64), which
        // `ifreq` is, alive for the call.
        let r = unsafe { sys::ioctl(fd, TUNSETIFF, ifreq.as_mut_ptr() as usize) };
        if r < 0 {
            return Err(alloc::format!(
                "TUNSETIFF {name} failed (errno {}): does the tap exist, owned by this user? \
                 (ip tuntap add dev {name} mode tap user $USER; ip link set {name} up)",
                -r
            ));
        }
        // A locally administered unicast MAC from the process id, so two instances differ.
        let pid = sys::getpid() as u32;
        let mac = [
            0x02,
            0x52,
            0x48,
            (pid >> 16) as u8,
            (pid >> 8) as u8,
            pid as u8,
        ];
        let tap = Tap {
            fd,
            name: alloc::format!("tap:{name}"),
            mac,
            stats: NetDeviceStats::default(),
            scratch: vec![0; 65536],
        };
        Ok(Bound::Net(
            Box::new(tap),
            DeviceIrq::Line(IrqLine(fd as u32), Trigger::Edge),
        ))
    }
}

/// An open tap.
struct Tap {
    fd: i32,
    name: String,
    mac: [u8; 6],
    stats: NetDeviceStats,
    /// Reads land here first: a frame longer than the caller's buffer is read whole (the
    /// kernel would otherwise truncate it silently) and then dropped.
    scratch: Vec<u8>,
}

impl NetDevice for Tap {
    fn name(&self) -> &str {
        &self.name
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NetError> {
        loop {
            let n = sys::read_raw(self.fd, &mut self.scratch);
            if n == EAGAIN {
                return Ok(None);
            }
            if n < 0 {
                return Err(NetError::Device("tap read failed"));
            }
            let n = n as usize;
            if n > buf.len() || !(14..=MAX_FRAME).contains(&n) {
                self.stats.rx_dropped += 1;
                continue;
            }
            buf[..n].copy_from_slice(&self.scratch[..n]);
            self.stats.rx_frames += 1;
            return Ok(Some(n));
        }
    }

    fn transmit(&mut self, frame: &[u8]) -> Result<(), NetError> {
        if frame.len() > MAX_FRAME {
            return Err(NetError::TooLarge);
        }
        match sys::write_raw(self.fd, frame) {
            n if n >= 0 => {
                self.stats.tx_frames += 1;
                Ok(())
            }
            EAGAIN => Err(NetError::Busy),
            _ => Err(NetError::Device("tap write failed")),
        }
    }

    fn handle_interrupt(&mut self) {
        self.stats.interrupts += 1;
    }

    fn stats(&self) -> NetDeviceStats {
        self.stats
    }
}

impl core::fmt::Debug for Tap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tap").field("name", &self.name).finish()
    }
}
