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
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod http;
pub mod neighbours;
pub mod policy;
pub mod validate;

#[cfg(rhea_kernel)]
mod socket;
#[cfg(rhea_kernel)]
mod stack;
#[cfg(rhea_kernel)]
pub use {
    socket::{ListenOptions, TcpListener, TcpStream, UdpSocket},
    stack::{NetStats, SocketInfo, changes, sockets, stats, wait_for_change},
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
    /// The socket budget (or the heap) has no room for another socket.
    NoMemory,
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
            Self::NoMemory => "no memory for another socket",
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
    /// Bytes (KiB) of socket buffers the stack may hold; `None`: half the heap free after
    /// the frame pool, at start.
    pub socket_kib: Option<usize>,
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
            socket_kib: None,
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

/// The `rhea.net.*` keys [`Config::with_cmdline`] knows (others under `rhea.net.` are refused).
pub const KEYS: &[(&str, &str)] = &[
    (
        "rhea.net.ip",
        "dhcp, or a unicast IPv4 address with /prefix (1-32)",
    ),
    (
        "rhea.net.gw",
        "the default gateway: a unicast IPv4 address on the subnet",
    ),
    ("rhea.net.prio", "the network thread's priority, 1 to 63"),
    (
        "rhea.net.driver-prio",
        "the NIC driver thread's priority, 1 to 63",
    ),
    (
        "rhea.net.buffers",
        "frame buffers, 16 to 65536 (and they must fit the heap)",
    ),
    (
        "rhea.net.socket_kib",
        "KiB of socket buffers, 64 to 1048576 (and they must fit the heap)",
    ),
    (
        "rhea.net.irq_cpu",
        "the CPU the NIC interrupt goes to, 0 to 63",
    ),
    (
        "rhea.net.tap",
        "LinuxU: an existing tap interface, 1 to 15 bytes, no '/'",
    ),
];

/// Why `address` cannot be this interface's own address, if it cannot.
fn not_own_address(address: Ipv4Cidr) -> Option<&'static str> {
    let a = address.address();
    let o = a.octets();
    if a.is_unspecified() {
        Some("the unspecified address")
    } else if a.is_broadcast() {
        Some("the broadcast address")
    } else if a.is_multicast() {
        Some("a multicast address")
    } else if a.is_loopback() {
        Some("a loopback address")
    } else if o[0] == 0 {
        Some("in 0.0.0.0/8 (\"this network\")")
    } else if o[0] >= 240 {
        Some("a reserved address (240.0.0.0/4)")
    } else if address.prefix_len() <= 30 && address.broadcast() == Some(a) {
        Some("the subnet's broadcast address")
    } else if address.prefix_len() <= 30 && address.network().address() == a {
        Some("the subnet's network address")
    } else {
        None
    }
}

impl Config {
    /// Applies the `rhea.net.*` settings of a kernel command line to `self`, strictly: every
    /// key under `rhea.net.` must be one of [`KEYS`] with a valid value (the last occurrence of
    /// a key wins, every occurrence must be valid), else the error names the key, the value
    /// and what is allowed.
    pub fn with_cmdline(mut self, cmdline: &str) -> Result<Config, ConfigError> {
        let bad = |key: &str, v: &str, want: &str| {
            Err(ConfigError(alloc::format!("{key}={v}: expected {want}")))
        };
        let mut gateway = None;
        for arg in cmdline.split_ascii_whitespace() {
            if !arg.starts_with("rhea.net.") {
                continue;
            }
            let Some((key, v)) = arg.split_once('=') else {
                return Err(ConfigError(alloc::format!("{arg}: expected {arg}=VALUE")));
            };
            let want = |k: &str| KEYS.iter().find(|(n, _)| *n == k).map_or("", |(_, w)| w);
            match key {
                "rhea.net.ip" if v == "dhcp" => self.ip = IpConfig::Dhcp,
                "rhea.net.ip" => match v.parse::<Ipv4Cidr>() {
                    Ok(address) if address.prefix_len() > 0 => {
                        if let Some(why) = not_own_address(address) {
                            return Err(ConfigError(alloc::format!(
                                "{key}={v}: {} is {why}; expected {}",
                                address.address(),
                                want(key)
                            )));
                        }
                        self.ip = IpConfig::Static {
                            address,
                            gateway: None,
                        };
                    }
                    _ => return bad(key, v, want(key)),
                },
                "rhea.net.gw" => match v.parse::<Ipv4Address>() {
                    Ok(a) => gateway = Some((a, v)),
                    Err(_) => return bad(key, v, want(key)),
                },
                "rhea.net.prio" | "rhea.net.driver-prio" => match v.parse::<u8>() {
                    Ok(p) if (1..=63).contains(&p) && !v.starts_with('+') => {
                        if key == "rhea.net.prio" {
                            self.net_priority = p;
                        } else {
                            self.driver_priority = p;
                        }
                    }
                    _ => return bad(key, v, want(key)),
                },
                "rhea.net.buffers" => match v.parse::<usize>() {
                    Ok(n) if (16..=65536).contains(&n) && !v.starts_with('+') => {
                        self.buffers = n;
                    }
                    _ => return bad(key, v, want(key)),
                },
                "rhea.net.socket_kib" => match v.parse::<usize>() {
                    Ok(n) if (64..=1 << 20).contains(&n) && !v.starts_with('+') => {
                        self.socket_kib = Some(n);
                    }
                    _ => return bad(key, v, want(key)),
                },
                "rhea.net.irq_cpu" => match v.parse::<u32>() {
                    Ok(n) if n < 64 && !v.starts_with('+') => {}
                    _ => return bad(key, v, want(key)),
                },
                "rhea.net.tap" => {
                    if v.is_empty() || v.len() > 15 || v.contains('/') {
                        return bad(key, v, want(key));
                    }
                }
                _ => {
                    let known: alloc::vec::Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
                    return Err(ConfigError(alloc::format!(
                        "{arg}: unknown network setting; expected one of {}",
                        known.join(", ")
                    )));
                }
            }
        }
        if let Some((gw, v)) = gateway {
            match &mut self.ip {
                IpConfig::Static { address, gateway } => {
                    let ours = *address;
                    let why = if gw == ours.address() {
                        Some("this interface's own address")
                    } else if !ours.contains_addr(&gw) {
                        Some("not on the subnet")
                    } else {
                        not_own_address(Ipv4Cidr::new(gw, ours.prefix_len()))
                    };
                    if let Some(why) = why {
                        return Err(ConfigError(alloc::format!(
                            "rhea.net.gw={v}: {gw} is {why} ({ours}); expected {}",
                            KEYS[1].1
                        )));
                    }
                    *gateway = Some(gw);
                }
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
#[cfg(rhea_kernel)]
pub fn start(config: &Config) -> Result<(), NetError> {
    stack::start(config)
}

/// The interface's address, once configured (static at start, or when DHCP has a lease).
#[cfg(rhea_kernel)]
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
            "rhea.net.buffers=65537",
            "rhea.net.buffers=+64",
            // Not a unicast address of this host (smoltcp panicked on the first two).
            "rhea.net.ip=255.255.255.255/32",
            "rhea.net.ip=224.0.0.1/24",
            "rhea.net.ip=0.0.0.0/24",
            "rhea.net.ip=127.0.0.1/8",
            "rhea.net.ip=10.0.3.255/24",
            "rhea.net.ip=10.0.3.0/24",
            "rhea.net.ip=240.0.0.1/8",
            "rhea.net.ip=0.1.2.3/8",
            // Gateways that cannot be.
            "rhea.net.ip=10.0.3.2/24 rhea.net.gw=10.0.4.1",
            "rhea.net.ip=10.0.3.2/24 rhea.net.gw=10.0.3.2",
            "rhea.net.ip=10.0.3.2/24 rhea.net.gw=10.0.3.255",
            // Unknown or valueless keys, bad values of the others.
            "rhea.net.iq=10.0.3.2/24",
            "rhea.net.ip",
            "rhea.net.socket_kib=1",
            "rhea.net.socket_kib=lots",
            "rhea.net.irq_cpu=64",
            "rhea.net.tap=",
            "rhea.net.tap=a/b",
            "rhea.net.tap=sixteen-bytes-xx",
            // Every occurrence must be valid, even when a later one is.
            "rhea.net.prio=0 rhea.net.prio=30",
        ] {
            let e = Config::default().with_cmdline(bad).unwrap_err().0;
            // The error names the key (the first word of the offending argument).
            let key = bad
                .split_ascii_whitespace()
                .find(|a| e.contains(a.split('=').next().unwrap()))
                .unwrap_or_else(|| panic!("{bad}: {e} names no key"));
            assert!(!key.is_empty());
        }
        // The last occurrence wins; point-to-point /31 and /32 addresses are fine.
        let c = Config::default()
            .with_cmdline("rhea.net.prio=10 rhea.net.prio=30 rhea.net.socket_kib=512")
            .unwrap();
        assert_eq!((c.net_priority, c.socket_kib), (30, Some(512)));
        for ok in ["rhea.net.ip=10.0.3.255/32", "rhea.net.ip=10.0.3.0/31"] {
            assert!(Config::default().with_cmdline(ok).is_ok(), "{ok}");
        }
    }
}
