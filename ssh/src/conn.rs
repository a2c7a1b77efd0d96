//! One SSH connection in its own thread: sunset's IO-less runner driven over a blocking
//! TCP stream, and the shell's terminal ([`rhea_shell::Io`]) on its session channel.
//!
//! There is no second thread per connection: the shell's own reads and writes drive the
//! protocol ([`Conn::pump`]). Everything a pump does is bounded in time — a socket read
//! waits at most what the caller allows, a socket write at most [`STALL`] — and in space:
//! the runner's packet buffers are fixed, channel input the shell has not read yet is kept
//! up to [`CIN`] bytes (more is dropped: keys typed while a command prints), and the
//! channel window sunset grants the client is small (1000 bytes).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use core::fmt;

use rhea::time::{Duration, Instant, now};
use rhea_net::{IpEndpoint, NetError, TcpStream};
use rhea_shell::{Closed, Io, Shell};
use sunset::event::{Event, ServEvent};
use sunset::{ChanData, ChanFail, ChanHandle, PubKey, Runner, Server, SignKey};

use crate::{Config, fingerprint, log_failure};

/// A peer that takes none of our output for this long is dropped.
pub const STALL: Duration = Duration::from_secs(30);
/// Bytes read from the socket at once.
const RX: usize = 2048;
/// Channel input kept for the shell.
const CIN: usize = 1024;
/// Failed logins one connection may make; the next closes it.
const MAX_FAILURES: u32 = 6;
/// What a failed login costs its connection.
const FAIL_DELAY: Duration = Duration::from_secs(1);

/// What every connection shares: the configuration and the host key.
pub(crate) struct Shared {
    pub(crate) cfg: Config,
    pub(crate) hostkey: SignKey,
}

/// What the client asked its session channel to run.
enum Request {
    Shell,
    Exec(String),
}

/// Why a connection ended.
#[derive(Debug)]
enum Gone {
    /// The peer closed or reset it.
    Peer,
    /// A protocol error (sunset's).
    Protocol(sunset::Error),
    /// The peer took none of our output for [`STALL`].
    Stalled,
    /// Too many failed logins.
    Failures,
    /// No shell or command asked for within the login grace time.
    Grace,
}

impl fmt::Display for Gone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gone::Peer => f.write_str("the peer closed it"),
            Gone::Protocol(e) => write!(f, "protocol error: {e}"),
            Gone::Stalled => write!(f, "the peer read nothing for {} s", STALL.as_secs()),
            Gone::Failures => write!(f, "{MAX_FAILURES} failed logins"),
            Gone::Grace => f.write_str("no login in time"),
        }
    }
}

/// The connection's state apart from the runner (so events, which borrow the runner, can
/// update it).
struct State {
    shared: Arc<Shared>,
    peer: Option<IpEndpoint>,
    user: String,
    chan: Option<ChanHandle>,
    request: Option<Request>,
    failures: u32,
}

/// One connection.
pub(crate) struct Conn {
    runner: Runner<'static, Server>,
    stream: TcpStream,
    rx: Box<[u8; RX]>,
    rx_at: usize,
    rx_end: usize,
    cin: Box<[u8; CIN]>,
    cin_at: usize,
    cin_end: usize,
    /// The client sent EOF on the channel (no more input).
    in_eof: bool,
    /// End-of-input means the session is over (a shell, not a command).
    eof_closes: bool,
    /// The connection is unusable.
    gone: bool,
    st: State,
}

/// Serves one connection until it ends.
pub(crate) fn serve(shell: &Shell, shared: &Arc<Shared>, stream: TcpStream, n: u32) {
    let peer = stream.peer();
    let mut c = Conn {
        runner: Runner::new_server_owned(),
        stream,
        rx: Box::new([0; RX]),
        rx_at: 0,
        rx_end: 0,
        cin: Box::new([0; CIN]),
        cin_at: 0,
        cin_end: 0,
        in_eof: false,
        eof_closes: false,
        gone: false,
        st: State {
            shared: shared.clone(),
            peer,
            user: String::new(),
            chan: None,
            request: None,
            failures: 0,
        },
    };
    let who = Who(peer);
    let started = now();
    let request = match c.handshake() {
        Ok(r) => r,
        Err(g) => {
            rhea::println!("ssh-{n}: {who}: closed before a session: {g}");
            return;
        }
    };
    let user = core::mem::take(&mut c.st.user);
    let user = Shown(&user);
    let login_ms = now().saturating_duration_since(started).as_millis();
    match request {
        Request::Shell => {
            c.eof_closes = true;
            rhea::println!("ssh-{n}: {who}: {user} logged in ({login_ms} ms): shell");
            let idle = shared.cfg.idle;
            let ended = shell.run(Box::new(c), Some(idle));
            rhea::println!("ssh-{n}: {who}: {user}'s session ended ({ended:?})");
        }
        Request::Exec(cmd) => {
            let shown = Shown(&cmd);
            rhea::println!("ssh-{n}: {who}: {user} logged in ({login_ms} ms): runs `{shown}`");
            let ok = shell.exec(Box::new(c), &cmd);
            rhea::println!(
                "ssh-{n}: {who}: `{shown}` {}",
                if ok { "done" } else { "failed" }
            );
        }
    }
}

/// What a peer sent (a user name, a command), for log lines: control characters escaped so
/// they cannot drive the operator's terminal, and cut after [`SHOWN`] characters.
struct Shown<'a>(&'a str);

/// The most characters of a peer's text a log line shows.
const SHOWN: usize = 64;

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(SHOWN) {
            write!(f, "{}", c.escape_debug())?;
        }
        if chars.next().is_some() {
            f.write_str("…")?;
        }
        Ok(())
    }
}

/// A peer's address for log lines.
struct Who(Option<IpEndpoint>);

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(e) => write!(f, "{e}"),
            None => f.write_str("(gone)"),
        }
    }
}

impl Conn {
    /// Runs the protocol until the client has logged in and asked its session channel for
    /// a shell or a command, within the login grace time.
    fn handshake(&mut self) -> Result<Request, Gone> {
        let deadline = now().saturating_add(self.st.shared.cfg.login_grace);
        loop {
            if let Some(r) = self.st.request.take() {
                return Ok(r);
            }
            let left = deadline.saturating_duration_since(now());
            if left.is_zero() {
                return Err(Gone::Grace);
            }
            self.pump(left.min(Duration::from_secs(1)))?;
        }
    }

    /// Handles what sunset has for us, takes channel input, sends what is queued, and then
    /// feeds buffered socket bytes to sunset — or, with none buffered, waits up to `wait`
    /// for more.
    fn pump(&mut self, wait: Duration) -> Result<(), Gone> {
        if self.gone {
            return Err(Gone::Peer);
        }
        let r = self.pump_inner(wait);
        if r.is_err() {
            self.gone = true;
        }
        r
    }

    fn pump_inner(&mut self, wait: Duration) -> Result<(), Gone> {
        self.events()?;
        self.take_channel_input()?;
        self.send_output()?;
        if self.st.request.is_some() || self.cin_at < self.cin_end {
            // Something for the caller: no waiting for more.
            return Ok(());
        }
        if self.rx_at < self.rx_end {
            let n = self
                .runner
                .input(&self.rx[self.rx_at..self.rx_end])
                .map_err(Gone::Protocol)?;
            self.rx_at += n;
            if n == 0 {
                // sunset holds a packet for us still: handle it before more input (if it
                // is channel input the shell has not taken, the next pump takes it).
                self.events()?;
                self.take_channel_input()?;
                if !self.runner.is_input_ready() {
                    rhea::thread::sleep(Duration::from_millis(2));
                }
            }
            return Ok(());
        }
        self.rx_at = 0;
        self.rx_end = 0;
        match self.stream.read(&mut self.rx[..], Some(wait)) {
            Ok(0) => {
                self.runner.close_input();
                Err(Gone::Peer)
            }
            Ok(n) => {
                self.rx_end = n;
                Ok(())
            }
            Err(NetError::Timeout) => Ok(()),
            Err(_) => Err(Gone::Peer),
        }
    }

    /// Handles sunset's events until it has none.
    fn events(&mut self) -> Result<(), Gone> {
        // A bound on one call's work; what is left waits for the next pump.
        for _ in 0..64 {
            match self.runner.progress().map_err(Gone::Protocol)? {
                Event::None => return Ok(()),
                Event::Progressed => {}
                Event::Serv(ev) => handle(&mut self.st, ev)?,
                // A server runner has no client events.
                Event::Cli(_) => return Err(Gone::Peer),
            }
        }
        Ok(())
    }

    /// Moves channel input sunset holds into our buffer (dropping what does not fit).
    fn take_channel_input(&mut self) -> Result<(), Gone> {
        while let Some((num, dt, _)) = self.runner.read_channel_ready() {
            let Some(ch) = self.st.chan.as_ref().filter(|c| c.num() == num) else {
                // Input on a channel we refused or never had: nothing will read it.
                return Ok(());
            };
            if self.cin_at == self.cin_end {
                self.cin_at = 0;
                self.cin_end = 0;
            }
            let space = &mut self.cin[self.cin_end..];
            if !matches!(dt, ChanData::Normal) || space.is_empty() {
                self.runner
                    .discard_read_channel(ch)
                    .map_err(Gone::Protocol)?;
                continue;
            }
            match self.runner.read_channel(ch, ChanData::Normal, space) {
                Ok(0) => return Ok(()),
                Ok(n) => self.cin_end += n,
                Err(_) => {
                    self.in_eof = true;
                    return Ok(());
                }
            }
        }
        if let Some(ch) = self.st.chan.as_ref()
            && self.runner.is_channel_eof(ch)
        {
            self.in_eof = true;
        }
        Ok(())
    }

    /// Writes what sunset has queued for the wire, waiting at most [`STALL`] for room.
    fn send_output(&mut self) -> Result<(), Gone> {
        loop {
            let buf = self.runner.output_buf();
            if buf.is_empty() {
                return Ok(());
            }
            match self.stream.write(buf, Some(STALL)) {
                Ok(n) => self.runner.consume_output(n),
                Err(NetError::Timeout) => return Err(Gone::Stalled),
                Err(_) => return Err(Gone::Peer),
            }
        }
    }

    fn channel_closed(&self) -> bool {
        self.st
            .chan
            .as_ref()
            .is_none_or(|ch| self.runner.is_channel_closed(ch))
    }
}

impl Io for Conn {
    fn write(&mut self, mut bytes: &[u8]) -> Result<(), Closed> {
        let since = now();
        while !bytes.is_empty() {
            if self.gone || self.channel_closed() {
                return Err(Closed);
            }
            let r = {
                let ch = self.st.chan.as_ref().ok_or(Closed)?;
                self.runner.write_channel(ch, ChanData::Normal, bytes)
            };
            match r {
                Ok(0) => {
                    // No window or buffer room: let the peer's window adjusts in.
                    if now().saturating_duration_since(since) > STALL {
                        self.gone = true;
                        return Err(Closed);
                    }
                    self.pump(Duration::from_millis(20)).map_err(|_| Closed)?;
                }
                Ok(n) => bytes = &bytes[n..],
                Err(_) => return Err(Closed),
            }
        }
        self.send_output().map_err(|_| {
            self.gone = true;
            Closed
        })
    }

    fn end(&mut self, status: u32) {
        self.exit(status);
    }

    fn read(&mut self, timeout: Duration) -> Result<Option<u8>, Closed> {
        let deadline: Instant = now().saturating_add(timeout);
        // Pumps after the deadline (socket bytes may still be buffered): a bound.
        let mut late = 0;
        loop {
            if self.cin_at < self.cin_end {
                let b = self.cin[self.cin_at];
                self.cin_at += 1;
                return Ok(Some(b));
            }
            if self.gone || self.channel_closed() || (self.in_eof && self.eof_closes) {
                return Err(Closed);
            }
            let left = deadline.saturating_duration_since(now());
            if left.is_zero() {
                late += 1;
                if late > 8 {
                    return Ok(None);
                }
            }
            self.pump(left).map_err(|_| Closed)?;
            if left.is_zero() && self.cin_at == self.cin_end && self.rx_at == self.rx_end {
                return Ok(None);
            }
        }
    }
}

impl Conn {
    /// Ends the session channel with `status` and waits (at most 2 s) for the client's
    /// close, so the connection ends cleanly rather than by a dropped socket.
    fn exit(&mut self, status: u32) {
        for _ in 0..4 {
            if self.gone {
                return;
            }
            let r = match self.st.chan.as_ref() {
                Some(ch) => self.runner.exit_channel(ch, status),
                None => return,
            };
            match r {
                Ok(()) => break,
                // The output buffer is full: send it, then try again.
                Err(sunset::Error::BusySend { .. }) if self.send_output().is_ok() => {}
                Err(_) => return,
            }
        }
        let until = now().saturating_add(Duration::from_secs(2));
        while !self.channel_closed() && now() < until {
            if self.pump(Duration::from_millis(100)).is_err() {
                return;
            }
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Send what is queued (the channel's close, after `exit`); the stream's drop then
        // closes the connection once its own buffer has gone out.
        if !self.gone {
            let _ = self.events();
            let _ = self.send_output();
        }
    }
}

/// Answers one of sunset's server events.
fn handle(st: &mut State, ev: ServEvent<'_, '_>) -> Result<(), Gone> {
    let proto = Gone::Protocol;
    match ev {
        ServEvent::Hostkeys(h) => h.hostkeys(&[&st.shared.hostkey]).map_err(proto),
        ServEvent::FirstAuth(mut a) => {
            if let Ok(u) = a.username() {
                st.user = String::from(u);
            }
            // Public keys only; dropping `a` answers "try those".
            a.set_auth_methods(false, true).map_err(proto)
        }
        ServEvent::PasswordAuth(a) => a.reject().map_err(proto),
        ServEvent::PubkeyAuth(a) => {
            if let Ok(u) = a.username() {
                st.user = String::from(u);
            }
            let key = match a.pubkey() {
                Ok(PubKey::Ed25519(k)) => Some(k.key.0),
                _ => None,
            };
            if key.is_some_and(|k| st.shared.cfg.authorizes(&k)) {
                return a.allow().map_err(proto);
            }
            a.reject().map_err(proto)?;
            st.failures += 1;
            let what = match key {
                Some(k) => fingerprint(&k),
                None => String::from("a key of a type not taken"),
            };
            log_failure(&format_args!(
                "{}: login as {} refused: {what} is not authorized (failure {} of {MAX_FAILURES})",
                Who(st.peer),
                Shown(&st.user),
                st.failures
            ));
            if st.failures >= MAX_FAILURES {
                return Err(Gone::Failures);
            }
            rhea::thread::sleep(FAIL_DELAY);
            Ok(())
        }
        ServEvent::Authenticated => Ok(()),
        ServEvent::OpenSession(a) => {
            if st.chan.is_some() {
                // One session channel a connection: more would need more threads.
                return a
                    .reject(ChanFail::SSH_OPEN_ADMINISTRATIVELY_PROHIBITED)
                    .map_err(proto);
            }
            st.chan = Some(a.accept().map_err(proto)?);
            Ok(())
        }
        ServEvent::SessionPty(a) => a.succeed().map_err(proto),
        ServEvent::SessionEnv(a) => a.fail().map_err(proto),
        ServEvent::SessionShell(a) => {
            if st.request.is_some() {
                return a.fail().map_err(proto);
            }
            a.succeed().map_err(proto)?;
            st.request = Some(Request::Shell);
            Ok(())
        }
        ServEvent::SessionExec(a) => {
            if st.request.is_some() {
                return a.fail().map_err(proto);
            }
            let cmd = String::from(a.command().map_err(proto)?);
            a.succeed().map_err(proto)?;
            st.request = Some(Request::Exec(cmd));
            Ok(())
        }
        // No subsystems (sftp): refused.
        ServEvent::SessionSubsystem(a) => a.fail().map_err(proto),
        ServEvent::Defunct => Err(Gone::Peer),
        ServEvent::PollAgain => Ok(()),
    }
}
