//! Blocking sockets for apps: TCP listeners and streams, UDP sockets.
//!
//! Every call takes the stack lock, works on its smoltcp socket, and if it cannot progress
//! waits on the stack's condition variable — which the network thread notifies after polls
//! that changed socket state — until it can, the socket fails, or its timeout passes. The
//! caller runs at its own priority throughout; nothing spins. `None` as a timeout waits
//! without limit; TCP connections still end (with [`NetError::Reset`]) when the peer is gone,
//! through smoltcp's keep-alive and retransmission timeouts.

use crate::NetError;
use crate::stack::{self, CHANGED, Stack};
use alloc::vec;
use alloc::vec::Vec;
use rhea::sync::MutexGuard;
use rhea::time::{Duration, Instant};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};

/// TCP socket buffers (each direction).
const TCP_BUFFER: usize = 64 * 1024;
/// How long a silent peer is tolerated before the connection is reset.
const TCP_TIMEOUT: Duration = Duration::from_secs(30);
/// Keep-alive probes on idle connections.
const TCP_KEEPALIVE: Duration = Duration::from_secs(10);
/// UDP: datagrams and bytes buffered per direction.
const UDP_PACKETS: usize = 128;
const UDP_BYTES: usize = 128 * 1024;

fn smol(d: Duration) -> smoltcp::time::Duration {
    smoltcp::time::Duration::from_micros(d.as_micros() as u64)
}

/// Waits on the stack's condition variable until `deadline` (`None`: no limit). Returns the
/// guard, or [`NetError::Timeout`].
fn wait(
    g: MutexGuard<'static, Option<Stack>>,
    deadline: Option<Instant>,
) -> Result<MutexGuard<'static, Option<Stack>>, NetError> {
    match deadline {
        None => Ok(CHANGED.wait(g)),
        Some(d) => {
            let now = rhea::time::now();
            if now.as_nanos() >= d.as_nanos() {
                return Err(NetError::Timeout);
            }
            let left = Duration::from_nanos(d.as_nanos() - now.as_nanos());
            Ok(CHANGED.wait_timeout(g, left).0)
        }
    }
}

fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| {
        Instant::from_nanos(
            rhea::time::now()
                .as_nanos()
                .saturating_add(t.as_nanos() as u64),
        )
    })
}

fn stack_of<'a>(g: &'a mut MutexGuard<'static, Option<Stack>>) -> &'a mut Stack {
    g.as_mut().expect("stack::lock checked it is started")
}

fn new_tcp() -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
        tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
    );
    s.set_timeout(Some(smol(TCP_TIMEOUT)));
    s.set_keep_alive(Some(smol(TCP_KEEPALIVE)));
    s.set_nagle_enabled(false);
    s
}

/// A TCP port accepting connections, with a backlog of listening sockets.
#[derive(Debug)]
pub struct TcpListener {
    port: u16,
    backlog: Vec<SocketHandle>,
}

impl TcpListener {
    /// Listens on `port` with room for `backlog` (at least 1) connections being set up at once.
    pub fn bind(port: u16, backlog: usize) -> Result<TcpListener, NetError> {
        if port == 0 {
            return Err(NetError::InvalidInput);
        }
        let mut g = stack::lock()?;
        let s = stack_of(&mut g);
        let mut handles = Vec::new();
        for _ in 0..backlog.max(1) {
            let mut sock = new_tcp();
            sock.listen(IpListenEndpoint::from(port))
                .map_err(|_| NetError::InvalidInput)?;
            handles.push(s.sockets.add(sock));
        }
        drop(g);
        stack::kick();
        Ok(TcpListener {
            port,
            backlog: handles,
        })
    }

    /// Waits for a connection (at most `timeout`).
    pub fn accept(&mut self, timeout: Option<Duration>) -> Result<TcpStream, NetError> {
        let deadline = deadline(timeout);
        let mut g = stack::lock()?;
        loop {
            let s = stack_of(&mut g);
            let ready = self.backlog.iter().position(|&h| {
                let sock = s.sockets.get::<tcp::Socket>(h);
                sock.is_active() && !sock.is_listening() && sock.state() != tcp::State::SynReceived
            });
            if let Some(i) = ready {
                let h = self.backlog.swap_remove(i);
                let mut sock = new_tcp();
                sock.listen(IpListenEndpoint::from(self.port))
                    .map_err(|_| NetError::InvalidInput)?;
                self.backlog.push(s.sockets.add(sock));
                return Ok(TcpStream { handle: Some(h) });
            }
            // A listening socket that fell back to Closed (reset during the handshake) listens
            // again.
            for &h in &self.backlog {
                let sock = s.sockets.get_mut::<tcp::Socket>(h);
                if sock.state() == tcp::State::Closed {
                    let _ = sock.listen(IpListenEndpoint::from(self.port));
                }
            }
            g = wait(g, deadline)?;
        }
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        if let Ok(mut g) = stack::lock() {
            let s = stack_of(&mut g);
            for h in self.backlog.drain(..) {
                s.sockets.get_mut::<tcp::Socket>(h).abort();
                s.orphans.push(h);
            }
        }
        stack::kick();
    }
}

/// A TCP connection.
#[derive(Debug)]
pub struct TcpStream {
    handle: Option<SocketHandle>,
}

impl TcpStream {
    /// Connects to `remote` from an ephemeral `local_port`, waiting at most `timeout`.
    pub fn connect(
        remote: IpEndpoint,
        local_port: u16,
        timeout: Option<Duration>,
    ) -> Result<TcpStream, NetError> {
        let deadline = deadline(timeout);
        let mut g = stack::lock()?;
        let s = stack_of(&mut g);
        let mut sock = new_tcp();
        sock.connect(s.iface.context(), remote, local_port)
            .map_err(|_| NetError::InvalidInput)?;
        let h = s.sockets.add(sock);
        let stream = TcpStream { handle: Some(h) };
        stack::kick();
        loop {
            let s = stack_of(&mut g);
            match s.sockets.get::<tcp::Socket>(h).state() {
                tcp::State::Established => return Ok(stream),
                tcp::State::Closed => return Err(NetError::Refused),
                _ => {}
            }
            g = wait(g, deadline)?;
        }
    }

    fn handle(&self) -> SocketHandle {
        self.handle.expect("present until drop")
    }

    /// Reads what has arrived into `buf` (waiting at most `timeout` for something); `Ok(0)`
    /// when the peer closed its side.
    pub fn read(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<usize, NetError> {
        let deadline = deadline(timeout);
        let h = self.handle();
        let mut g = stack::lock()?;
        loop {
            let s = stack_of(&mut g);
            let sock = s.sockets.get_mut::<tcp::Socket>(h);
            if sock.can_recv() {
                let n = sock.recv_slice(buf).map_err(|_| NetError::Closed)?;
                drop(g);
                stack::kick(); // the window opened
                return Ok(n);
            }
            if !sock.may_recv() {
                return match sock.state() {
                    tcp::State::Closed if sock.remote_endpoint().is_none() => Err(NetError::Reset),
                    _ => Ok(0),
                };
            }
            g = wait(g, deadline)?;
        }
    }

    /// Queues as much of `buf` as fits (waiting at most `timeout` for room); returns how much.
    pub fn write(&mut self, buf: &[u8], timeout: Option<Duration>) -> Result<usize, NetError> {
        let deadline = deadline(timeout);
        let h = self.handle();
        let mut g = stack::lock()?;
        loop {
            let s = stack_of(&mut g);
            let sock = s.sockets.get_mut::<tcp::Socket>(h);
            if !sock.may_send() {
                return Err(if sock.state() == tcp::State::Closed {
                    NetError::Reset
                } else {
                    NetError::Closed
                });
            }
            if sock.can_send() {
                let n = sock.send_slice(buf).map_err(|_| NetError::Closed)?;
                drop(g);
                stack::kick();
                return Ok(n);
            }
            g = wait(g, deadline)?;
        }
    }

    /// Writes all of `buf`, each wait for room limited by `timeout`.
    pub fn write_all(&mut self, mut buf: &[u8], timeout: Option<Duration>) -> Result<(), NetError> {
        while !buf.is_empty() {
            let n = self.write(buf, timeout)?;
            buf = &buf[n..];
        }
        Ok(())
    }

    /// The peer's address.
    pub fn peer(&self) -> Option<IpEndpoint> {
        let mut g = stack::lock().ok()?;
        stack_of(&mut g)
            .sockets
            .get::<tcp::Socket>(self.handle())
            .remote_endpoint()
    }

    /// Closes our side (the peer reads end-of-stream once queued data is sent).
    pub fn close(&mut self) {
        if let Ok(mut g) = stack::lock() {
            stack_of(&mut g)
                .sockets
                .get_mut::<tcp::Socket>(self.handle())
                .close();
        }
        stack::kick();
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let Some(h) = self.handle.take() else { return };
        if let Ok(mut g) = stack::lock() {
            let s = stack_of(&mut g);
            s.sockets.get_mut::<tcp::Socket>(h).close();
            s.orphans.push(h);
        }
        stack::kick();
    }
}

/// A UDP socket bound to a port.
#[derive(Debug)]
pub struct UdpSocket {
    handle: SocketHandle,
}

impl UdpSocket {
    /// Binds `port`.
    pub fn bind(port: u16) -> Result<UdpSocket, NetError> {
        let mut g = stack::lock()?;
        let s = stack_of(&mut g);
        let buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
                vec![0u8; UDP_BYTES],
            )
        };
        let mut sock = udp::Socket::new(buffer(), buffer());
        sock.bind(port).map_err(|_| NetError::InvalidInput)?;
        Ok(UdpSocket {
            handle: s.sockets.add(sock),
        })
    }

    /// Waits at most `timeout` for a datagram; copies it into `buf` (truncated to its length)
    /// and returns its length and sender.
    pub fn recv_from(
        &self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<(usize, IpEndpoint), NetError> {
        let deadline = deadline(timeout);
        let mut g = stack::lock()?;
        loop {
            let s = stack_of(&mut g);
            let sock = s.sockets.get_mut::<udp::Socket>(self.handle);
            match sock.recv_slice(buf) {
                Ok((n, meta)) => return Ok((n, meta.endpoint)),
                Err(udp::RecvError::Truncated) => return Err(NetError::Truncated),
                Err(udp::RecvError::Exhausted) => {}
            }
            g = wait(g, deadline)?;
        }
    }

    /// Queues one datagram to `to`, waiting at most `timeout` for buffer room.
    pub fn send_to(
        &self,
        data: &[u8],
        to: IpEndpoint,
        timeout: Option<Duration>,
    ) -> Result<(), NetError> {
        let deadline = deadline(timeout);
        let mut g = stack::lock()?;
        loop {
            let s = stack_of(&mut g);
            let sock = s.sockets.get_mut::<udp::Socket>(self.handle);
            match sock.send_slice(data, to) {
                Ok(()) => {
                    drop(g);
                    stack::kick();
                    return Ok(());
                }
                Err(udp::SendError::BufferFull) => {}
                Err(udp::SendError::Unaddressable) => return Err(NetError::Unreachable),
            }
            g = wait(g, deadline)?;
        }
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        if let Ok(mut g) = stack::lock() {
            stack_of(&mut g).sockets.remove(self.handle);
        }
    }
}
