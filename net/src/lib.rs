//! # `rhea-net` — the network stack
//!
//! smoltcp runs in one **network thread**; each NIC has a **driver thread** that moves frames
//! between the device and the network thread through lock-free rings (`rhea-queue`); apps use
//! blocking TCP and UDP sockets ([`TcpListener`], [`TcpStream`], [`UdpSocket`]) whose calls wake
//! the calling thread, at its own priority, when the network thread has made progress for it.
//! Both threads' priorities are the app's choice ([`Config`]), so an appliance decides whether
//! its control loop or its packets come first. ARP and ICMP echo are answered by smoltcp;
//! addresses are static or from DHCPv4.
//!
//! Host-tested here: [`validate`] (every received frame is checked, and malformed ones counted
//! by kind, before smoltcp sees it) and [`Config`] parsing. The kernel side (`stack`, `socket`)
//! exists in builds for a board.
#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod validate;

#[cfg(any(
    rhea_board = "qemu-x86_64",
    rhea_board = "linuxu",
    rhea_board = "qemu-aarch64",
    rhea_board = "rpi4",
    rhea_board = "xen-x86_64",
    rhea_board = "xen-arm64"
))]
mod socket;
#[cfg(any(
    rhea_board = "qemu-x86_64",
    rhea_board = "linuxu",
    rhea_board = "qemu-aarch64",
    rhea_board = "rpi4",
    rhea_board = "xen-x86_64",
    rhea_board = "xen-arm64"
))]
mod stack;
#[cfg(any(
    rhea_board = "qemu-x86_64",
    rhea_board = "linuxu",
    rhea_board = "qemu-aarch64",
    rhea_board = "rpi4",
    rhea_board = "xen-x86_64",
    rhea_board = "xen-arm64"
))]
pub use {
    socket::{TcpListener, TcpStream, UdpSocket},
    stack::{NetStats, stats},
};

pub use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};

/// Why a network call failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NetError {
    /// [`start`] has not run (or failed).
    NotStarted,
    /// [`start`] ran already.
    AlreadyStarted,
    /// No network device was bound.
    NoDevice,
    /// A thread could not be started.
    NoThread,
    /// The timeout passed.
    Timeout,
    /// The connection is closed for this operation.
    Closed,
    /// The connection was reset or timed out (the peer is gone).
    Reset,
    /// The peer refused the connection (or it failed while being set up).
    Refused,
    /// No route to the address (no ARP answer, no address configured yet).
    Unreachable,
    /// A datagram was larger than the buffer it was read into.
    Truncated,
    /// A bad argument (port 0, address in use, …).
    InvalidInput,
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::NotStarted => "network not started",
            Self::AlreadyStarted => "network already started",
            Self::NoDevice => "no network device",
            Self::NoThread => "cannot start a network thread",
            Self::Timeout => "timed out",
            Self::Closed => "connection closed",
            Self::Reset => "connection reset or peer gone",
            Self::Refused => "connection refused",
            Self::Unreachable => "address unreachable",
            Self::Truncated => "datagram truncated",
            Self::InvalidInput => "invalid argument",
        })
    }
}

/// How the interface gets its address.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IpConfig {
    /// A fixed address and prefix, and optionally a default gateway.
    Static {
        /// Address and prefix length.
        address: Ipv4Cidr,
        /// The default route.
        gateway: Option<Ipv4Address>,
    },
    /// DHCPv4.
    Dhcp,
}

/// What [`start`] sets up.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Config {
    /// The address.
    pub ip: IpConfig,
    /// Priority of the network thread (smoltcp).
    pub net_priority: u8,
    /// Priority of the NIC's driver thread.
    pub driver_priority: u8,
    /// Frame buffers in the pool.
    pub buffers: usize,
    /// Capacity of each ring between driver and network thread (a power of two).
    pub ring: usize,
}

impl Default for Config {
    /// DHCP; network thread at 20 and driver at 24 (above ordinary threads at 16, below
    /// control loops); 256 buffers; rings of 128.
    fn default() -> Config {
        Config {
            ip: IpConfig::Dhcp,
            net_priority: 20,
            driver_priority: 24,
            buffers: 256,
            ring: 128,
        }
    }
}

/// Why a configuration string was refused.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ConfigError(pub alloc::string::String);

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Config {
    /// Applies the `rhea.net.*` settings of a kernel command line to `self`:
    /// `rhea.net.ip=dhcp` or `rhea.net.ip=A.B.C.D/N`, `rhea.net.gw=A.B.C.D`,
    /// `rhea.net.prio=P`, `rhea.net.driver-prio=P`, `rhea.net.buffers=N`.
    pub fn with_cmdline(mut self, cmdline: &str) -> Result<Config, ConfigError> {
        let bad = |key: &str, v: &str, want: &str| {
            Err(ConfigError(alloc::format!("{key}={v}: expected {want}")))
        };
        let mut gateway = None;
        for arg in cmdline.split_ascii_whitespace() {
            let Some((key, v)) = arg.split_once('=') else {
                continue;
            };
            match key {
                "rhea.net.ip" if v == "dhcp" => self.ip = IpConfig::Dhcp,
                "rhea.net.ip" => match v.parse::<Ipv4Cidr>() {
                    Ok(address) if address.prefix_len() > 0 => {
                        self.ip = IpConfig::Static {
                            address,
                            gateway: None,
                        };
                    }
                    _ => return bad(key, v, "dhcp or an IPv4 address with /prefix (1-32)"),
                },
                "rhea.net.gw" => match v.parse::<Ipv4Address>() {
                    Ok(a) => gateway = Some(a),
                    Err(_) => return bad(key, v, "an IPv4 address"),
                },
                "rhea.net.prio" | "rhea.net.driver-prio" => match v.parse::<u8>() {
                    Ok(p) if (1..=63).contains(&p) => {
                        if key == "rhea.net.prio" {
                            self.net_priority = p;
                        } else {
                            self.driver_priority = p;
                        }
                    }
                    _ => return bad(key, v, "a priority from 1 to 63"),
                },
                "rhea.net.buffers" => match v.parse::<usize>() {
                    Ok(n) if (16..=65536).contains(&n) => self.buffers = n,
                    _ => return bad(key, v, "a number of buffers from 16 to 65536"),
                },
                _ => {}
            }
        }
        if let Some(gw) = gateway {
            match &mut self.ip {
                IpConfig::Static { gateway, .. } => *gateway = Some(gw),
                IpConfig::Dhcp => {
                    return Err(ConfigError(alloc::string::String::from(
                        "rhea.net.gw needs a static rhea.net.ip",
                    )));
                }
            }
        }
        Ok(self)
    }
}

/// Takes the first network device and starts its driver thread and the network thread.
#[cfg(any(
    rhea_board = "qemu-x86_64",
    rhea_board = "linuxu",
    rhea_board = "qemu-aarch64",
    rhea_board = "rpi4",
    rhea_board = "xen-x86_64",
    rhea_board = "xen-arm64"
))]
pub fn start(config: &Config) -> Result<(), NetError> {
    stack::start(config)
}

/// The interface's address, once configured (static at start, or when DHCP has a lease).
#[cfg(any(
    rhea_board = "qemu-x86_64",
    rhea_board = "linuxu",
    rhea_board = "qemu-aarch64",
    rhea_board = "rpi4",
    rhea_board = "xen-x86_64",
    rhea_board = "xen-arm64"
))]
pub fn address() -> Option<Ipv4Cidr> {
    let g = stack::lock().ok()?;
    g.as_ref()?.address
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_settings() {
        let c = Config::default()
            .with_cmdline(
                "rhea.checker=1 rhea.net.ip=10.0.3.2/24 rhea.net.gw=10.0.3.1 rhea.net.prio=30",
            )
            .unwrap();
        assert_eq!(
            c.ip,
            IpConfig::Static {
                address: "10.0.3.2/24".parse().unwrap(),
                gateway: Some(Ipv4Address::new(10, 0, 3, 1)),
            }
        );
        assert_eq!((c.net_priority, c.driver_priority), (30, 24));
        assert_eq!(
            Config::default()
                .with_cmdline("rhea.net.ip=dhcp")
                .unwrap()
                .ip,
            IpConfig::Dhcp
        );
        for bad in [
            "rhea.net.ip=10.0.3.2",
            "rhea.net.ip=10.0.3.2/33",
            "rhea.net.ip=10.0.3.2/0",
            "rhea.net.ip=banana",
            "rhea.net.gw=10.0.3.1",
            "rhea.net.ip=10.0.0.2/8 rhea.net.gw=x",
            "rhea.net.prio=0",
            "rhea.net.prio=64",
            "rhea.net.buffers=2",
        ] {
            assert!(Config::default().with_cmdline(bad).is_err(), "{bad}");
        }
    }
}
