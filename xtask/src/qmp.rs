//! QMP, QEMU's machine protocol, used for one thing: learning why QEMU shut the machine down
//! in `cargo xtask run`, where the terminal is QEMU's and its exit status alone cannot say.
//!
//! QEMU exits with status 0 both when the user leaves with Ctrl-a x and when a triple fault
//! resets the machine under `-no-reboot` (and on Ctrl-c, and on a guest power-off), so the
//! status cannot tell a normal quit from a crash. Of the ways to tell them apart this is the
//! exact one: QEMU's `SHUTDOWN` event names the cause (QAPI `ShutdownCause`), and Ctrl-a x
//! on `mon:stdio` is `host-qmp-quit` (the mux calls `qmp_quit`), a triple fault under
//! `-no-reboot` `guest-reset`, SIGINT `host-signal`. The alternatives guess: QEMU's
//! `QEMU: Terminated` line is written to the guest console, where a guest could print it
//! too, and needs the console piped through xtask; watching stdin for the bytes 0x01 `x`
//! needs the terminal in raw mode under xtask's control and still misses the monitor's
//! `quit`.
//!
//! How: xtask listens on a Unix socket, QEMU connects to it as a client (`-qmp unix:PATH`,
//! so there is no race to connect), and starts paused (`-S`); xtask negotiates
//! (`qmp_capabilities`, before which QEMU sends no events) and only then lets the guest run
//! (`cont`), so even a guest that faults at its first instruction is seen. A thread then
//! reads events until QEMU closes the socket on exit; QEMU writes `SHUTDOWN` before it exits.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Context, Result, fail};

/// Why QEMU shut the machine down: the `reason` of its `SHUTDOWN` event (QAPI
/// `ShutdownCause`), the causes a run tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShutdownCause {
    /// `host-qmp-quit`: the user quit — Ctrl-a x on `mon:stdio` (the monitor's `quit` too).
    Quit,
    /// `host-signal`: QEMU got SIGINT, SIGTERM or SIGHUP (Ctrl-c on its terminal, `kill`).
    Signal,
    /// `guest-reset`: the guest reset the machine, which `-no-reboot` turns into an exit: a
    /// triple fault, or a reset the guest asked for.
    GuestReset,
    /// `guest-shutdown`: the guest powered off (ACPI, PSCI `SYSTEM_OFF`).
    GuestShutdown,
    /// `guest-panic`: the guest reported a panic to QEMU (pvpanic).
    GuestPanic,
    /// Any other cause (`host-error`, `host-ui`, ...).
    Other,
}

impl ShutdownCause {
    /// The cause a QMP `reason` names.
    pub(crate) fn from_reason(reason: &str) -> ShutdownCause {
        match reason {
            "host-qmp-quit" => ShutdownCause::Quit,
            "host-signal" => ShutdownCause::Signal,
            "guest-reset" => ShutdownCause::GuestReset,
            "guest-shutdown" => ShutdownCause::GuestShutdown,
            "guest-panic" => ShutdownCause::GuestPanic,
            _ => ShutdownCause::Other,
        }
    }
}

/// The cause in one line QEMU sent, if it is a `SHUTDOWN` event
/// (`{"event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}, ...}`).
pub(crate) fn shutdown_event(line: &str) -> Option<ShutdownCause> {
    let v: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    if v.get("event")?.as_str()? != "SHUTDOWN" {
        return None;
    }
    let reason = v.get("data").and_then(|d| d.get("reason"));
    Some(ShutdownCause::from_reason(
        reason.and_then(|r| r.as_str()).unwrap_or(""),
    ))
}

/// How long QEMU may take to connect and answer the handshake (TCG under load starts in
/// well under a second).
const HANDSHAKE: Duration = Duration::from_secs(60);

/// A QMP socket QEMU will connect to. Removed when dropped.
pub(crate) struct Listener {
    listener: UnixListener,
    path: PathBuf,
}

impl Listener {
    /// Listens on a fresh socket in the temporary directory.
    pub(crate) fn new() -> Result<Listener> {
        // One per listener: the tests make several in one process.
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("rhea-xtask-{}-{n}.qmp", std::process::id()));
        if path.to_string_lossy().contains(',') {
            // QEMU would read what follows a comma as options.
            return fail(format!(
                "the QMP socket path {} has a comma; set TMPDIR to a directory without one",
                path.display()
            ));
        }
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .context(|| format!("cannot listen on the QMP socket {}", path.display()))?;
        listener
            .set_nonblocking(true)
            .context(|| "cannot make the QMP socket non-blocking".to_string())?;
        Ok(Listener { listener, path })
    }

    /// QEMU's arguments: connect to this socket, start paused (see the module's comment).
    pub(crate) fn qemu_args(&self) -> Vec<String> {
        vec![
            "-qmp".to_string(),
            format!("unix:{}", self.path.display()),
            "-S".to_string(),
        ]
    }

    /// Once QEMU (`child`) is started with [`qemu_args`](Self::qemu_args): waits for it to
    /// connect, negotiates, lets the guest run and watches the events; or, if QEMU exits
    /// first (a bad option, say), its exit status. A QEMU that neither connects nor answers
    /// within [`HANDSHAKE`] is killed.
    pub(crate) fn start(self, child: &mut Child) -> Result<Started> {
        let begun = Instant::now();
        let stream = loop {
            match self.listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return stop(child, format!("accepting QEMU's QMP connection: {e}")),
            }
            if let Some(status) = child
                .try_wait()
                .context(|| "waiting for QEMU".to_string())?
            {
                return Ok(Started::Exited(status));
            }
            if begun.elapsed() > HANDSHAKE {
                return stop(child, "QEMU did not connect to its QMP socket".to_string());
            }
            thread::sleep(Duration::from_millis(10));
        };
        match handshake(&stream) {
            Ok(reader) => Ok(Started::Running(Events(thread::spawn(move || {
                watch(reader)
            })))),
            Err(e) if closed(&e) => {
                // QEMU hung up: it is exiting (an option it could not honour once connected,
                // such as a host port forward); its exit status says how.
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if let Some(status) = child
                        .try_wait()
                        .context(|| "waiting for QEMU".to_string())?
                    {
                        return Ok(Started::Exited(status));
                    }
                    thread::sleep(Duration::from_millis(10));
                }
                stop(child, format!("QMP handshake with QEMU: {e}"))
            }
            Err(e) => stop(child, format!("QMP handshake with QEMU: {e}")),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Kills `child` (still paused, or not answering) and fails with `why`.
fn stop(child: &mut Child, why: String) -> Result<Started> {
    let _ = child.kill();
    let _ = child.wait();
    fail(why)
}

/// Whether a handshake error is QEMU closing the connection.
fn closed(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
    )
}

/// One line from QEMU; end of file is an error ([`closed`]).
fn read_line(reader: &mut BufReader<UnixStream>, line: &mut String) -> std::io::Result<()> {
    line.clear();
    match reader.read_line(line)? {
        0 => Err(std::io::Error::new(
            ErrorKind::UnexpectedEof,
            "QEMU closed the connection",
        )),
        _ => Ok(()),
    }
}

/// Greeting, `qmp_capabilities`, `cont`; returns the reader, positioned after the
/// capabilities' answer (events and `cont`'s answer follow).
fn handshake(stream: &UnixStream) -> std::io::Result<BufReader<UnixStream>> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(HANDSHAKE))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream.try_clone()?;
    let mut line = String::new();
    read_line(&mut reader, &mut line)?;
    if !line.contains("\"QMP\"") {
        return Err(std::io::Error::other(format!(
            "no QMP greeting: {:?}",
            line.trim()
        )));
    }
    writer.write_all(b"{\"execute\": \"qmp_capabilities\"}\n")?;
    read_line(&mut reader, &mut line)?;
    if !line.contains("\"return\"") {
        return Err(std::io::Error::other(format!(
            "qmp_capabilities answered {:?}",
            line.trim()
        )));
    }
    writer.write_all(b"{\"execute\": \"cont\"}\n")?;
    stream.set_read_timeout(None)?;
    Ok(reader)
}

/// Reads until QEMU closes the socket; the last `SHUTDOWN` event's cause.
fn watch(reader: BufReader<UnixStream>) -> Option<ShutdownCause> {
    let mut cause = None;
    for line in reader.lines() {
        let Ok(line) = line else { break };
        if let Some(c) = shutdown_event(&line) {
            cause = Some(c);
        }
    }
    cause
}

/// What [`Listener::start`] found.
pub(crate) enum Started {
    /// The guest runs; the events are being read.
    Running(Events),
    /// QEMU exited before connecting.
    Exited(ExitStatus),
}

/// The events of a running QEMU.
pub(crate) struct Events(thread::JoinHandle<Option<ShutdownCause>>);

impl Events {
    /// Once QEMU has exited: the cause of its last `SHUTDOWN` event, if it sent one (not
    /// when it exited on its own, as through `isa-debug-exit`).
    pub(crate) fn shutdown_cause(self) -> Option<ShutdownCause> {
        self.0.join().ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn shutdown_events_and_their_causes() {
        let event = |reason: &str| {
            format!(
                "{{\"timestamp\": {{\"seconds\": 1, \"microseconds\": 2}}, \"event\": \
                 \"SHUTDOWN\", \"data\": {{\"guest\": false, \"reason\": \"{reason}\"}}}}\r"
            )
        };
        // As QEMU 10.0 sent them for Ctrl-a x, a triple fault under -no-reboot and SIGINT.
        assert_eq!(
            shutdown_event(&event("host-qmp-quit")),
            Some(ShutdownCause::Quit)
        );
        assert_eq!(
            shutdown_event(&event("guest-reset")),
            Some(ShutdownCause::GuestReset)
        );
        assert_eq!(
            shutdown_event(&event("host-signal")),
            Some(ShutdownCause::Signal)
        );
        assert_eq!(
            shutdown_event(&event("guest-shutdown")),
            Some(ShutdownCause::GuestShutdown)
        );
        assert_eq!(
            shutdown_event(&event("host-error")),
            Some(ShutdownCause::Other)
        );
        for not in [
            "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"RESUME\"}",
            "{\"return\": {}}",
            "{\"QMP\": {\"version\": {}, \"capabilities\": [\"oob\"]}}",
            "QEMU: Terminated",
            "",
        ] {
            assert_eq!(shutdown_event(not), None, "{not}");
        }
    }

    /// A stand-in for QEMU on the other end of the socket: greets, answers, then sends
    /// `events` and hangs up.
    fn fake_qemu(path: PathBuf, events: Vec<String>) -> thread::JoinHandle<Vec<String>> {
        thread::spawn(move || {
            let stream = UnixStream::connect(&path).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            writer
                .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
                .unwrap();
            let mut got = Vec::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            got.push(line.trim().to_string());
            writer.write_all(b"{\"return\": {}}\r\n").unwrap();
            line.clear();
            reader.read_line(&mut line).unwrap();
            got.push(line.trim().to_string());
            for e in events {
                writer.write_all(e.as_bytes()).unwrap();
                writer.write_all(b"\r\n").unwrap();
            }
            got
        })
    }

    #[test]
    fn negotiates_then_continues_then_reports_the_shutdown() {
        let listener = Listener::new().unwrap();
        let fake = fake_qemu(
            listener.path.clone(),
            vec![
                "{\"event\": \"RESUME\"}".to_string(),
                "{\"return\": {}}".to_string(),
                "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-reset\"}}"
                    .to_string(),
            ],
        );
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let started = listener.start(&mut child).unwrap();
        let Started::Running(events) = started else {
            panic!("QEMU's stand-in did not connect")
        };
        assert_eq!(events.shutdown_cause(), Some(ShutdownCause::GuestReset));
        // The guest was let run only after negotiating.
        assert_eq!(
            fake.join().unwrap(),
            [
                "{\"execute\": \"qmp_capabilities\"}",
                "{\"execute\": \"cont\"}"
            ]
        );
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn a_qemu_that_exits_before_connecting_gives_its_status() {
        let listener = Listener::new().unwrap();
        let path = listener.path.clone();
        let mut child = Command::new("sh")
            .args(["-c", "exit 1"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        match listener.start(&mut child).unwrap() {
            Started::Exited(status) => assert_eq!(status.code(), Some(1)),
            Started::Running(_) => panic!("nothing connected"),
        }
        assert!(!path.exists(), "the socket is removed");
    }

    #[test]
    fn a_qemu_that_exits_after_connecting_gives_its_status() {
        let listener = Listener::new().unwrap();
        let path = listener.path.clone();
        // Connects, then hangs up without a greeting, as QEMU does when a -netdev fails.
        let peer = thread::spawn(move || drop(UnixStream::connect(&path).unwrap()));
        let mut child = Command::new("sh")
            .args(["-c", "sleep 0.3; exit 1"])
            .spawn()
            .unwrap();
        match listener.start(&mut child).unwrap() {
            Started::Exited(status) => assert_eq!(status.code(), Some(1)),
            Started::Running(_) => panic!("no handshake happened"),
        }
        peer.join().unwrap();
    }

    #[test]
    fn a_peer_that_is_not_qemu_fails_the_handshake_and_is_stopped() {
        let listener = Listener::new().unwrap();
        let path = listener.path.clone();
        let peer = thread::spawn(move || {
            let mut s = UnixStream::connect(&path).unwrap();
            s.write_all(b"hello\n").unwrap();
            // Held open until the handshake has read the line.
            thread::sleep(Duration::from_millis(200));
        });
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let Err(e) = listener.start(&mut child) else {
            panic!("a non-QMP peer was accepted")
        };
        assert!(e.to_string().contains("no QMP greeting"), "{e}");
        // Killed: try_wait now has a status.
        assert!(child.try_wait().unwrap().is_some());
        peer.join().unwrap();
    }
}
