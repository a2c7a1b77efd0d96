//! The host ports `cargo xtask run` forwards to the appliance (QEMU user networking's
//! `hostfwd`): its HTTP status page and its TCP and UDP echo, on the host's loopback.
//!
//! A port another program holds makes QEMU fail with `Could not set up host forwarding rule
//! 'tcp:127.0.0.1:8080-:8080'`, which names neither the service nor the way out. So before
//! QEMU starts, [`check_free`] binds each port the way QEMU will (the same address, protocol
//! and `SO_REUSEADDR`, which the standard library sets on a TCP listener as slirp does) and
//! names a taken one with the option that changes it; QEMU's own message is mapped to the same
//! words ([`qemu_message`]) in case a port is taken between the check and QEMU's start.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};

/// The host address the ports are forwarded from.
pub(crate) const HOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// The host ports of a run (`--http-port`, `--echo-port`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HostPorts {
    /// Forwarded to the appliance's HTTP port (8080).
    pub(crate) http: u16,
    /// Forwarded to the appliance's echo port (7), over TCP and UDP.
    pub(crate) echo: u16,
    /// Forwarded to the appliance's SSH port (22).
    pub(crate) ssh: u16,
}

impl HostPorts {
    /// The defaults: 8080, 7007 and 2222.
    pub(crate) const DEFAULT: HostPorts = HostPorts {
        http: 8080,
        echo: 7007,
        ssh: 2222,
    };
}

impl Default for HostPorts {
    fn default() -> HostPorts {
        HostPorts::DEFAULT
    }
}

/// A transport protocol of a forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    Tcp,
    Udp,
}

/// One forwarded host port: what it reaches and the option that moves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Forward {
    pub(crate) proto: Proto,
    pub(crate) port: u16,
    /// `the appliance's HTTP`.
    pub(crate) service: &'static str,
    /// `--http-port`.
    pub(crate) option: &'static str,
}

impl Forward {
    /// `host port 8080 (the appliance's HTTP) is in use: pick another with --http-port N`.
    pub(crate) fn in_use(&self) -> String {
        format!(
            "host port {} ({}) is in use: pick another with {} N",
            self.port, self.service, self.option
        )
    }
}

/// The forwards of `ports`, in QEMU's order.
pub(crate) fn forwards(ports: HostPorts) -> [Forward; 4] {
    [
        Forward {
            proto: Proto::Tcp,
            port: ports.http,
            service: "the appliance's HTTP",
            option: "--http-port",
        },
        Forward {
            proto: Proto::Tcp,
            port: ports.echo,
            service: "the appliance's TCP echo",
            option: "--echo-port",
        },
        Forward {
            proto: Proto::Udp,
            port: ports.echo,
            service: "the appliance's UDP echo",
            option: "--echo-port",
        },
        Forward {
            proto: Proto::Tcp,
            port: ports.ssh,
            service: "the appliance's SSH",
            option: "--ssh-port",
        },
    ]
}

/// `Err` with the message of the first port of `ports` that cannot be bound on [`HOST`]
/// now; the same port for HTTP and echo is refused too (both forward TCP).
pub(crate) fn check_free(ports: HostPorts) -> Result<(), String> {
    for (a, b, (na, nb)) in [
        (ports.http, ports.echo, ("--http-port", "--echo-port")),
        (ports.http, ports.ssh, ("--http-port", "--ssh-port")),
        (ports.echo, ports.ssh, ("--echo-port", "--ssh-port")),
    ] {
        if a == b {
            return Err(format!(
                "{na} and {nb} are both {a}: each TCP forward needs a port of its own"
            ));
        }
    }
    for f in forwards(ports) {
        let bound = match f.proto {
            Proto::Tcp => TcpListener::bind((HOST, f.port)).map(drop),
            Proto::Udp => UdpSocket::bind((HOST, f.port)).map(drop),
        };
        match bound {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AddrInUse => return Err(f.in_use()),
            Err(e) => {
                return Err(format!(
                    "host port {} ({}) cannot be bound on {HOST}: {e}: pick another with {} N",
                    f.port, f.service, f.option
                ));
            }
        }
    }
    Ok(())
}

/// QEMU's complaint about a forward of `ports` in one line of its stderr (`...: Could not set
/// up host forwarding rule 'tcp:127.0.0.1:8080-:8080'`), as [`Forward::in_use`] says it.
pub(crate) fn qemu_message(line: &str, ports: HostPorts) -> Option<String> {
    let (_, rest) = line.split_once("Could not set up host forwarding rule '")?;
    let rule = rest.split('\'').next()?;
    // `proto:host-address:host-port-guest-address:guest-port`.
    let (host, _guest) = rule.split_once('-')?;
    let mut parts = host.split(':');
    let proto = match parts.next()? {
        "tcp" | "" => Proto::Tcp,
        "udp" => Proto::Udp,
        _ => return None,
    };
    let port: u16 = parts.nth(1)?.parse().ok()?;
    forwards(ports)
        .into_iter()
        .find(|f| f.proto == proto && f.port == port)
        .map(|f| f.in_use())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_messages_name_the_option() {
        let [http, tcp_echo, udp_echo, ssh] = forwards(HostPorts::DEFAULT);
        assert_eq!(
            ssh.in_use(),
            "host port 2222 (the appliance's SSH) is in use: pick another with --ssh-port N"
        );
        assert_eq!(
            http.in_use(),
            "host port 8080 (the appliance's HTTP) is in use: pick another with --http-port N"
        );
        assert_eq!(
            tcp_echo.in_use(),
            "host port 7007 (the appliance's TCP echo) is in use: pick another with \
             --echo-port N"
        );
        assert_eq!(
            udp_echo.in_use(),
            "host port 7007 (the appliance's UDP echo) is in use: pick another with \
             --echo-port N"
        );
    }

    /// A free port for the test, held by the returned socket until it is dropped.
    fn taken_tcp() -> (TcpListener, u16) {
        let l = TcpListener::bind((HOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        (l, port)
    }

    #[test]
    fn a_taken_port_is_named_before_qemu_starts() {
        let (_held, http) = taken_tcp();
        let (free, echo) = taken_tcp();
        drop(free);
        let err = check_free(HostPorts { http, echo, ssh: 0 }).unwrap_err();
        assert_eq!(
            err,
            format!(
                "host port {http} (the appliance's HTTP) is in use: pick another with \
                 --http-port N"
            )
        );
        // The echo port over UDP only.
        let udp = UdpSocket::bind((HOST, 0)).unwrap();
        let echo = udp.local_addr().unwrap().port();
        let (free, http) = taken_tcp();
        drop(free);
        let err = check_free(HostPorts { http, echo, ssh: 0 }).unwrap_err();
        assert!(
            err.contains("(the appliance's UDP echo) is in use") && err.contains("--echo-port"),
            "{err}"
        );
        drop(udp);
    }

    #[test]
    fn free_ports_pass_and_one_port_for_both_is_refused() {
        let (a, http) = taken_tcp();
        let (b, echo) = taken_tcp();
        drop((a, b));
        assert_eq!(check_free(HostPorts { http, echo, ssh: 0 }), Ok(()));
        let err = check_free(HostPorts {
            http,
            echo: http,
            ssh: 0,
        })
        .unwrap_err();
        assert!(err.contains("both"), "{err}");
    }

    #[test]
    fn qemus_own_message_is_mapped() {
        let ports = HostPorts::DEFAULT;
        // As QEMU 10.0 prints it.
        let line = "qemu-system-x86_64: -netdev user,id=n0,hostfwd=tcp:127.0.0.1:8080-:8080,\
                    hostfwd=tcp:127.0.0.1:7007-:7,hostfwd=udp:127.0.0.1:7007-:7: Could not set \
                    up host forwarding rule 'tcp:127.0.0.1:8080-:8080'";
        assert_eq!(
            qemu_message(line, ports).as_deref(),
            Some(
                "host port 8080 (the appliance's HTTP) is in use: pick another with \
                 --http-port N"
            )
        );
        let udp = "qemu-system-x86_64: -netdev user,...: Could not set up host forwarding rule \
                   'udp:127.0.0.1:7007-:7'";
        assert!(qemu_message(udp, ports).unwrap().contains("UDP echo"));
        let moved = HostPorts {
            http: 18080,
            echo: 17007,
            ssh: 12222,
        };
        let line = "x: Could not set up host forwarding rule 'tcp:127.0.0.1:17007-:7'";
        assert!(
            qemu_message(line, moved)
                .unwrap()
                .starts_with("host port 17007 (the appliance's TCP echo)")
        );
        // Not ours, or not that message.
        assert_eq!(
            qemu_message(
                "x: Could not set up host forwarding rule 'tcp:127.0.0.1:9-:9'",
                ports
            ),
            None
        );
        assert_eq!(
            qemu_message("qemu-system-x86_64: terminating on signal 2", ports),
            None
        );
    }
}
